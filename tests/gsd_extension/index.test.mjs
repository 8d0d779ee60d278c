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
  assert.deepEqual(calls[0].args, ["--invoked-as=/parallel", "status"]);
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
  assert.deepEqual(two.calls[1].args, ["--invoked-as=/parallel", "merge"]);
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

test("merge --preview runs as is: no dry run first, no question", async () => {
  const report = { code: 1, stdout: "# Merge Preview\n\n- **M001** (running) — CONFLICT\n", stderr: "" };
  const { pi, calls } = fakePi([report]);
  register(pi, config);
  const ctx = fakeCtx(true, false);
  await pi.commands.parallel.handler("merge --preview", ctx);
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0].args, ["--invoked-as=/parallel", "merge", "--preview"]);
  assert.match(pi.messages[0].content, /Merge Preview/);
});

test("revert asks first; headless needs --yes, which is not passed on", async () => {
  const done = { code: 0, stdout: "# Revert M001\n", stderr: "" };
  const no = fakePi([done]);
  register(no.pi, config);
  const ctx = fakeCtx(true, false);
  await no.pi.commands.parallel.handler("revert M001", ctx);
  assert.equal(no.calls.length, 0);
  assert.deepEqual(ctx.notes.at(-1), ["info", "Revert cancelled."]);

  const headless = fakePi([done]);
  register(headless.pi, config);
  const hctx = fakeCtx(false, true);
  await headless.pi.commands.parallel.handler("revert M001", hctx);
  assert.equal(headless.calls.length, 0);
  assert.match(hctx.notes.at(-1)[1], /run \/parallel revert M001 --yes/);

  const yes = fakePi([done]);
  register(yes.pi, config);
  await yes.pi.commands.parallel.handler("revert M001 --yes", fakeCtx(false));
  assert.deepEqual(yes.calls[0].args, ["--invoked-as=/parallel", "revert", "M001"]);
  const dry = fakePi([done]);
  register(dry.pi, config);
  await dry.pi.commands.parallel.handler("revert M001 --dry-run", fakeCtx(false));
  assert.deepEqual(dry.calls[0].args, ["--invoked-as=/parallel", "revert", "M001", "--dry-run"]);
});

// ------------------------------------------------------------------ the session's events
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findSpool, watchBuiltin, BUILTIN_STARTED } from "../../gsd_parallel_plugin/gsd_extension/index.js";

function project() {
  const root = mkdtempSync(join(tmpdir(), "gsdp-ext-"));
  mkdirSync(join(root, ".gsd"));
  mkdirSync(join(root, "src"));
  return root;
}

function eventPi() {
  const handlers = {};
  const calls = [];
  let release;
  const pi = {
    commands: {},
    registerCommand(name, spec) { this.commands[name] = spec; },
    on(name, fn) { handlers[name] = fn; },
    // The drain never finishes until the test says so: handlers must not wait for it.
    exec(cmd, args, opts) { calls.push({ cmd, args, opts }); return new Promise((r) => { release = r; }); },
  };
  return { pi, handlers, calls, finish: () => release && release({ code: 0, stdout: "", stderr: "" }) };
}

function sessionCtx(cwd) {
  const notes = [];
  return { cwd, notes, sessionManager: { getSessionId: () => "s-1" }, ui: { notify: (t, l) => notes.push([l, t]) } };
}

const spoolOf = (root) => join(root, ".gsd", "parallel", "session-events.jsonl");
const lines = (root) => readFileSync(spoolOf(root), "utf8").trim().split("\n").map((l) => JSON.parse(l));

test("findSpool walks up to the project, never into GSD's home", () => {
  const root = project();
  assert.equal(findSpool(join(root, "src"), { GSD_HOME: "/nowhere" }).root, root);
  assert.equal(findSpool(join(root, "src"), { GSD_HOME: join(root, ".gsd") }), null);
});

test("session events are spooled at once and drained without waiting", async () => {
  const root = project();
  const { pi, handlers, calls, finish } = eventPi();
  register(pi, config, { env: {}, delayMs: 10 });
  const ctx = sessionCtx(join(root, "src"));
  handlers.session_start({ type: "session_start" }, ctx);
  const cost = { role: "assistant", model: "m", usage: { cost: { total: 0.25 } } };
  handlers.message_end({ type: "message_end", message: cost }, ctx);
  handlers.message_end({ type: "message_end", message: { role: "user", content: "hi" } }, ctx);
  handlers.tool_execution_start({ toolCallId: "t1", toolName: "gsd_complete_milestone", args: { milestoneId: "M001" } }, ctx);
  // a failed completion and an unrelated tool are not completions
  handlers.tool_execution_start({ toolCallId: "t0", toolName: "gsd_complete_milestone", args: { milestoneId: "M009" } }, ctx);
  handlers.tool_execution_end({ toolCallId: "t0", toolName: "gsd_complete_milestone", isError: true, result: {} }, ctx);
  handlers.tool_execution_end({ toolCallId: "t9", toolName: "bash", isError: false, result: {} }, ctx);
  handlers.tool_execution_end({ toolCallId: "t1", toolName: "gsd_complete_milestone", isError: false,
    result: { details: { milestoneId: "M001" } } }, ctx);
  const got = lines(root);
  assert.deepEqual(got.map((l) => l.event), ["session_start", "cost", "milestone_complete"]);
  assert.equal(got[1].cost_usd, 0.25);
  assert.equal(got[2].milestone, "M001");
  assert.ok(got.every((l) => l.session === "s-1"));
  // The completion drains now; the drain is still running, so the next event only queues one more.
  assert.equal(calls.length, 1);
  assert.deepEqual(calls[0].args.slice(-3), ["--project", root, "session-events"]);
  handlers.session_shutdown({ type: "session_shutdown" }, ctx);
  assert.equal(calls.length, 1);
  finish();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(calls.length, 2);
  assert.equal(lines(root).at(-1).event, "session_end");
});

test("inside a worker nothing is forwarded", () => {
  const root = project();
  const { pi, handlers } = eventPi();
  register(pi, config, { env: { GSD_PARALLEL_WORKER: "1" } });
  assert.deepEqual(Object.keys(handlers), []);
  assert.ok(pi.commands.parallel);
  assert.ok(!existsSync(spoolOf(root)));
});

test("GSD's built-in /gsd parallel start is pointed out once", async () => {
  const root = project();
  const notes = [];
  const stop = watchBuiltin(join(root, ".gsd"), (text, level) => notes.push([level, text]));
  const state = { active: true, workers: [{ milestoneId: "M001", pid: 1 }] };
  writeFileSync(join(root, ".gsd", "orchestrator.json.tmp"), JSON.stringify(state));
  writeFileSync(join(root, ".gsd", "orchestrator.json"), JSON.stringify(state));
  await new Promise((r) => setTimeout(r, 300));
  writeFileSync(join(root, ".gsd", "orchestrator.json"), JSON.stringify(state));
  await new Promise((r) => setTimeout(r, 300));
  stop();
  assert.deepEqual(notes, [["warning", BUILTIN_STARTED]]);
});

// ------------------------------------------------------------------ auto_merge: confirm
import { mergeAsker, cannotAsk } from "../../gsd_parallel_plugin/gsd_extension/index.js";

function withStatus(root, mid, state) {
  mkdirSync(join(root, ".gsd", "parallel", "workers"), { recursive: true });
  writeFileSync(join(root, ".gsd", "parallel", "workers", `${mid}.status.json`), JSON.stringify({ milestoneId: mid, state }));
}

function askerPi(status) {
  const calls = [];
  const pi = {
    messages: [],
    sendMessage(m) { this.messages.push(m); },
    async exec(cmd, args) {
      calls.push(args);
      if (args.includes("status")) return { code: 0, stdout: JSON.stringify(status), stderr: "" };
      return { code: 0, stdout: "# Merge Results\n\n- **M001** — merged successfully\n", stderr: "" };
    },
  };
  return { pi, calls };
}

const completeRun = (autoMerge) => ({ auto_merge: autoMerge, workers: [{ id: "M001", title: "Core", state: "complete", merged: false }] });

test("a milestone completing during the session is offered for merge in GSD's dialog", async () => {
  const root = project();
  withStatus(root, "M001", "running");
  const { pi, calls } = askerPi(completeRun("confirm"));
  const asked = [];
  const ctx = { hasUI: true, cwd: root, ui: { notify: () => undefined, confirm: async (t, q) => { asked.push(q); return true; } } };
  const asker = mergeAsker(pi, config, { env: {}, pollMs: 100000 });
  asker.start(ctx, root);
  await asker.look(ctx, root);
  assert.equal(calls.length, 0); // still running: nothing to ask
  withStatus(root, "M001", "complete");
  await asker.look(ctx, root);
  await asker.look(ctx, root); // asked once, never again
  asker.stop();
  assert.deepEqual(asked, ["M001 (Core) is complete. Merge it into the integration branch?"]);
  assert.deepEqual(calls.map((a) => a.slice(1)), [["--json", "status"], ["merge", "M001"]]);
  assert.match(pi.messages[0].content, /merged successfully/);
});

test("headless GSD (it says yes to every dialog) is never asked: it is told", async () => {
  const root = project();
  withStatus(root, "M001", "running");
  const { pi, calls } = askerPi(completeRun("confirm"));
  const notes = [];
  const ctx = { hasUI: true, cwd: root, ui: { notify: (t) => notes.push(t), confirm: async () => assert.fail("asked") } };
  assert.equal(cannotAsk(ctx, { GSD_HEADLESS: "1" }), true);
  const asker = mergeAsker(pi, config, { env: { GSD_HEADLESS: "1" }, pollMs: 100000 });
  asker.start(ctx, root);
  withStatus(root, "M001", "complete");
  await asker.look(ctx, root);
  asker.stop();
  assert.ok(!calls.some((a) => a.includes("merge")));
  assert.deepEqual(notes, ["M001 (Core) is complete — awaiting merge: /parallel merge M001 --yes"]);
});

test("auto and manual merging, and milestones complete before the session, are left alone", async () => {
  const root = project();
  withStatus(root, "M002", "complete"); // complete before the session: /parallel merge is for it
  const { pi, calls } = askerPi(completeRun("auto"));
  const ctx = { hasUI: true, cwd: root, ui: { notify: () => assert.fail("told"), confirm: async () => assert.fail("asked") } };
  const asker = mergeAsker(pi, config, { env: {}, pollMs: 100000 });
  asker.start(ctx, root);
  withStatus(root, "M001", "complete");
  await asker.look(ctx, root);
  asker.stop();
  assert.deepEqual(calls.map((a) => a.slice(1)), [["--json", "status"]]);
});

test("/parallel merge under gsd headless (a UI that says yes to all) needs --yes", async () => {
  const plan = { code: 0, stdout: JSON.stringify({ results: [{ id: "M001", outcome: "clean" }] }), stderr: "" };
  const { pi, calls } = fakePi([plan]);
  register(pi, config);
  const ctx = fakeCtx(true, true);
  process.env.GSD_HEADLESS = "1";
  try {
    await pi.commands.parallel.handler("merge", ctx);
  } finally {
    delete process.env.GSD_HEADLESS;
  }
  assert.equal(calls.length, 1);
  assert.equal(ctx.notes.at(-1)[0], "warning");
});

test("milestone IDs complete after the subcommands that take one", () => {
  const root = project();
  for (const m of ["M001", "M002", "M010", "notes"]) mkdirSync(join(root, ".gsd", "milestones", m), { recursive: true });
  const ids = () => milestoneIdsOf(root);
  assert.deepEqual(completions(config, "merge M00", ids).map((c) => c.value), ["merge M001", "merge M002"]);
  assert.equal(completions(config, "start M0", ids), null);
  assert.deepEqual(completions(config, "stop ", ids).map((c) => c.label), ["M001", "M002", "M010"]);
});
import { milestoneIds } from "../../gsd_parallel_plugin/gsd_extension/index.js";
const milestoneIdsOf = (root) => milestoneIds(join(root, "src"), { GSD_HOME: "/nowhere" });
