import { test } from "node:test";
import assert from "node:assert/strict";
import register, { splitArgs, completions } from "../../gsd_parallel_plugin/gsd_extension/index.js";

const config = {
  command: ["/abs/gsd-parallel"],
  subcommands: [
    { name: "start", usage: "[--dry-run]", summary: "Start." },
    { name: "status", usage: "[MID]", summary: "Status." },
    { name: "merge", usage: "[MID]", summary: "Merge." },
  ],
};

function fakePi(responses) {
  const calls = [];
  const pi = {
    commands: {},
    messages: [],
    registerCommand(name, spec) { this.commands[name] = spec; },
    sendMessage(m) { this.messages.push(m); },
    async exec(cmd, args, opts) { calls.push({ cmd, args, opts }); return responses.shift(); },
  };
  return { pi, calls };
}

function fakeCtx(hasUI = true, answer = true) {
  const notes = [];
  return {
    notes, hasUI, cwd: "/proj",
    ui: { notify: (t, l) => notes.push([l, t]), confirm: async () => answer },
  };
}

test("splitArgs and completions", () => {
  assert.deepEqual(splitArgs(`merge "M001" --yes`), ["merge", "M001", "--yes"]);
  assert.deepEqual(completions(config, "st").map((c) => c.value), ["start", "status"]);
  assert.equal(completions(config, "zz"), null);
});

test("status runs the recorded gsd-parallel and notifies its line", async () => {
  const { pi, calls } = fakePi([{ code: 0, stdout: "No parallel orchestration is currently active.\n", stderr: "" }]);
  register(pi, config);
  const ctx = fakeCtx();
  await pi.commands.parallel.handler("status", ctx);
  assert.equal(calls[0].cmd, "/abs/gsd-parallel");
  assert.deepEqual(calls[0].args, ["status"]);
  assert.equal(calls[0].opts.cwd, "/proj");
  assert.deepEqual(ctx.notes, [["info", "No parallel orchestration is currently active."]]);
});

test("a report becomes a session message; an error is one error line", async () => {
  const { pi } = fakePi([
    { code: 0, stdout: "# Report\n\n- a\n", stderr: "" },
    { code: 2, stdout: "", stderr: "gsd-parallel: Parallel mode is not enabled.\n" },
  ]);
  register(pi, config);
  const ctx = fakeCtx();
  await pi.commands.parallel.handler("graph", ctx);
  assert.equal(pi.messages[0].content, "# Report\n\n- a");
  await pi.commands.parallel.handler("start", ctx);
  assert.deepEqual(ctx.notes.at(-1), ["error", "Parallel mode is not enabled."]);
});

test("headless merge never merges without --yes", async () => {
  const plan = { code: 0, stdout: JSON.stringify({ results: [{ id: "M001", outcome: "clean" }] }), stderr: "" };
  const { pi, calls } = fakePi([plan]);
  register(pi, config);
  const ctx = fakeCtx(false, true);
  await pi.commands.parallel.handler("merge", ctx);
  assert.equal(calls.length, 1);
  assert.ok(calls[0].args.includes("--dry-run"));
  assert.equal(ctx.notes.at(-1)[0], "warning");

  const two = fakePi([plan, { code: 0, stdout: "# Merge Results\n\n- **M001** — merged successfully\n", stderr: "" }]);
  register(two.pi, config);
  await two.pi.commands.parallel.handler("merge --yes", fakeCtx(false));
  assert.deepEqual(two.calls[1].args, ["merge"]);
});

test("with a UI, merge asks and a no cancels", async () => {
  const plan = { code: 0, stdout: JSON.stringify({ results: [{ id: "M001", outcome: "clean" }] }), stderr: "" };
  const { pi, calls } = fakePi([plan]);
  register(pi, config);
  const ctx = fakeCtx(true, false);
  await pi.commands.parallel.handler("merge", ctx);
  assert.equal(calls.length, 1);
  assert.deepEqual(ctx.notes.at(-1), ["info", "Merge cancelled."]);
});
