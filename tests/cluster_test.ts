import { inProcessMesh } from "../mod.ts";
import { clusterSuite } from "./cluster_suite.ts";

clusterSuite("in-process cluster", () => {
  const mesh = inProcessMesh({ leaseTtl: 1000 });
  return Promise.resolve({ mesh: () => mesh, cleanup: () => Promise.resolve() });
});
