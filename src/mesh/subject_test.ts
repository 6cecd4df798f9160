import assert from "node:assert/strict";
import { patternCovers, subjectMatches } from "./subject.ts";

Deno.test("patternCovers: a pattern covers the subjects and the narrower patterns it matches", () => {
  const yes: [string, string][] = [
    ["chat.*", "chat.lobby"],
    ["chat.*", "chat.*"],
    ["chat.>", "chat.a.b"],
    ["chat.>", "chat.*.x"],
    ["chat.>", "chat.>"],
    ["chat.>", "chat.*"],
    [">", "anything.at.all"],
    ["a.*.c", "a.b.c"],
  ];
  const no: [string, string][] = [
    ["chat.*", "chat.>"], // would match chat.a.b
    ["chat.*", "chat.a.b"],
    ["chat.lobby", "chat.*"],
    ["chat.*", "chat"],
    ["chat.>", "chat"],
    ["a.*.c", "a.*.d"],
    ["a.b", "a.*"],
  ];
  for (const [p, r] of yes) assert.equal(patternCovers(p, r), true, `${p} covers ${r}`);
  for (const [p, r] of no) assert.equal(patternCovers(p, r), false, `${p} does not cover ${r}`);
  // where subjectMatches, which reads the request's wildcard as a token, says otherwise
  assert.equal(subjectMatches("chat.*", "chat.>"), true);
});
