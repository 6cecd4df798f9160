/** Small helpers shared by the tests (not part of the package): those of the unit tests. */
export { delay, rejectsBadPayload, waitFor, within } from "../src/util/_testing.ts";
