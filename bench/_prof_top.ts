/**
 * Prints the top functions of a V8 profile by self time (`.cpuprofile`, from `--cpu-prof`) or by
 * self allocation (`.heapprofile`, from `bench/_alloc_prof.ts`), with the share of the total
 * and, given the number of operations the profile covers, the amount per operation.
 *
 * `deno run -A bench/_prof_top.ts <file> [operations] [top=30]`
 *
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface CpuNode {
  id: number;
  callFrame: CallFrame;
}
interface HeapNode {
  callFrame: CallFrame;
  selfSize: number;
  children: HeapNode[];
}

const [file, opsArg, topArg] = Deno.args;
if (!file) throw new Error("usage: _prof_top.ts <file> [operations] [top]");
const ops = Number(opsArg ?? 0);
const top = Number(topArg ?? 30);
const doc = JSON.parse(await Deno.readTextFile(file));

const where = (c: CallFrame) =>
  `${c.functionName || "(anonymous)"} ${
    c.url.replace(/^.*\/(node_modules|wt-[a-z]+|main)\//, "")
  }:${c.lineNumber + 1}`;

const totals = new Map<string, number>();
let total = 0;
let unit: string;
if (doc.samples && doc.timeDeltas) {
  // CPU profile: self time = the sum of the deltas of the samples that hit the node.
  unit = "ms";
  const byId = new Map<number, CpuNode>(doc.nodes.map((n: CpuNode) => [n.id, n]));
  doc.samples.forEach((id: number, i: number) => {
    const dt = (doc.timeDeltas[i + 1] ?? 0) / 1000;
    const key = where(byId.get(id)!.callFrame);
    totals.set(key, (totals.get(key) ?? 0) + dt);
    total += dt;
  });
} else {
  // Sampling heap profile: self size per node.
  unit = "B";
  const walk = (n: HeapNode) => {
    const key = where(n.callFrame);
    totals.set(key, (totals.get(key) ?? 0) + n.selfSize);
    total += n.selfSize;
    n.children.forEach(walk);
  };
  walk(doc.head);
}
const rows = [...totals].sort((a, b) => b[1] - a[1]).slice(0, top);
console.log(
  `total ${total.toFixed(0)} ${unit}${
    ops
      ? `, ${((unit === "ms" ? total * 1000 : total) / ops).toFixed(2)} ${
        unit === "ms" ? "µs" : "B"
      } per operation over ${ops}`
      : ""
  }`,
);
for (const [k, v] of rows) {
  const per = ops
    ? `  ${((unit === "ms" ? v * 1000 : v) / ops).toFixed(2)}${unit === "ms" ? " µs" : " B"}/op`
    : "";
  console.log(
    `${((100 * v) / total).toFixed(1).padStart(5)} %  ${
      v.toFixed(1).padStart(9)
    } ${unit}${per}  ${k}`,
  );
}
