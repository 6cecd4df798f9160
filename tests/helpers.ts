/** Small helpers shared by the tests (not part of the package): those of the unit tests. */
export { advanceUntil, delay, rejectsBadPayload, waitFor, within } from "../src/util/_testing.ts";
