// /parallel inside GSD: runs the installed gsd-parallel (config.json, written by
// `gsd-parallel gsd-extension install`) with pi.exec and shows what it says.
// Plain ES module, no build step, no dependencies.
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, watch } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const TIMEOUT_MS = 120000;
// Hints in what gsd-parallel prints name /parallel, the way the user reached it here.
const INVOKED_AS = "--invoked-as=/parallel";
const SPOOL = "session-events.jsonl";
const DRAIN_DELAY_MS = 2000;
const POLL_MS = 3000;
const COMPLETE_TOOLS = new Set(["gsd_complete_milestone", "gsd_milestone_complete"]);
// Subcommands the extension runs itself; /parallel does not offer them.
const INTERNAL = new Set(["session-events"]);
// Marks our session messages apart from those of GSD's built-in /gsd parallel (same customType).
const OURS = "gsd-parallel-plugin";
// Commands that never return on their own: only their one-shot forms run here.
const FOLLOWING = { watch: ["--once"], logs: [] };

export function loadConfig(dir = HERE) {
  try {
    return JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  } catch {
    return { command: ["gsd-parallel"], subcommands: [] };
  }
}

/** Split a command line into words: whitespace, with '...' and "..." quoting. */
export function splitArgs(line) {
  const words = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(line || "")) !== null) words.push(m[1] ?? m[2] ?? m[3]);
  return words;
}

// Subcommands whose first argument is a milestone ID.
const TAKES_MILESTONE = new Set(["status", "stop", "pause", "resume", "merge", "revert", "logs"]);

/** Milestone IDs of the project *cwd* is in (its `.gsd/milestones/` folders). */
export function milestoneIds(cwd = process.cwd(), env = process.env) {
  const place = findSpool(cwd, env);
  if (!place) return [];
  try {
    return readdirSync(join(place.root, ".gsd", "milestones"))
      .filter((n) => /^M\d{3}(-[a-z0-9]{6})?$/.test(n))
      .sort();
  } catch {
    return [];
  }
}

export function completions(config, prefix, ids = milestoneIds) {
  const text = prefix || "";
  const words = text.split(/\s+/);
  if (words.length === 2 && TAKES_MILESTONE.has(words[0])) {
    const items = ids()
      .filter((m) => m.startsWith(words[1]))
      .map((m) => ({ value: `${words[0]} ${m}`, label: m }));
    return items.length ? items : null;
  }
  if (/\s/.test(text)) return null;
  const items = (config.subcommands || [])
    .filter((c) => !INTERNAL.has(c.name) && c.name.startsWith(text))
    .map((c) => ({ value: c.name, label: c.name, description: `${c.usage} — ${c.summary}`.trim() }));
  return items.length ? items : null;
}

function usage(config) {
  const names = (config.subcommands || []).filter((c) => !INTERNAL.has(c.name)).map((c) => c.name).join("|");
  return `Usage: /parallel <${names}> [args]`;
}

function errorLine(result) {
  const lines = `${result.stderr || ""}`.split("\n").map((l) => l.trim()).filter(Boolean);
  const own = lines.filter((l) => l.startsWith("gsd-parallel: "));
  const line = own.length ? own[own.length - 1] : lines[lines.length - 1];
  if (line) return line.replace(/^gsd-parallel: /, "");
  if (result.killed) return "gsd-parallel timed out";
  return `gsd-parallel exited with code ${result.code}`;
}

/** Show text: one line as a notification, a report as a message in the session. */
export function show(pi, ctx, text, level = "info") {
  const body = `${text || ""}`.replace(/\s+$/, "");
  if (!body) return;
  const lines = body.split("\n");
  if (lines.length === 1) {
    ctx.ui.notify(body, level);
    return;
  }
  const first = lines.find((l) => l.trim()) || body;
  ctx.ui.notify(first.replace(/^#+\s*/, ""), level);
  if (typeof pi.sendMessage === "function") {
    pi.sendMessage({ customType: "gsd-parallel", content: body, display: true, details: { source: OURS } });
  } else {
    ctx.ui.notify(body, level);
  }
}

export async function runCli(pi, ctx, config, args) {
  const [cmd, ...pre] = config.command && config.command.length ? config.command : ["gsd-parallel"];
  return pi.exec(cmd, [...pre, INVOKED_AS, ...args], { cwd: ctx.cwd, timeout: TIMEOUT_MS });
}

/** Whether nobody can answer a dialog: no UI, or `gsd headless`, which answers every
 * confirm with yes (it sets GSD_HEADLESS=1), so a yes there is not the user's. */
export function cannotAsk(ctx, env = process.env) {
  return !ctx.hasUI || env.GSD_HEADLESS === "1";
}

/** `/parallel merge`: a real merge needs the user's yes (GSD's dialog), or --yes. */
async function merge(pi, ctx, config, rest) {
  const yes = rest.includes("--yes") || rest.includes("-y");
  const args = rest.filter((a) => a !== "--yes" && a !== "-y");
  if (args.includes("--dry-run") || args.includes("--preview")) return null; // changes nothing
  const plan = await runCli(pi, ctx, config, ["merge", ...args, "--dry-run", "--json"]);
  if (plan.code !== 0 && !`${plan.stdout}`.trim().startsWith("{")) {
    ctx.ui.notify(errorLine(plan), "error");
    return false;
  }
  let results = [];
  try {
    results = JSON.parse(plan.stdout).results || [];
  } catch {
    results = [];
  }
  const ready = results.filter((r) => r.outcome !== "skipped").map((r) => r.id);
  if (!ready.length) {
    return args; // nothing to merge: the CLI says so in its own words
  }
  if (yes) return args;
  const question = `Merge ${ready.join(", ")} into the integration branch?`;
  if (cannotAsk(ctx)) {
    // Headless GSD answers every confirm with yes: that is not the user's say-so.
    ctx.ui.notify(`${question} Not merging without you: run /parallel merge --yes`, "warning");
    return false;
  }
  const ok = await ctx.ui.confirm("gsd-parallel merge", question);
  if (!ok) {
    ctx.ui.notify("Merge cancelled.", "info");
    return false;
  }
  return args;
}

/** `/parallel revert MID`: it moves the integration branch, so like a merge it needs the
 * user's yes (GSD's dialog), or --yes; `--dry-run` changes nothing and needs none. */
async function revertAsk(ctx, rest) {
  const yes = rest.includes("--yes") || rest.includes("-y");
  const args = rest.filter((a) => a !== "--yes" && a !== "-y");
  if (yes || args.includes("--dry-run")) return args;
  const mid = args.find((a) => !a.startsWith("-")) || "";
  const question = `Revert ${mid} on the integration branch${args.includes("--with-dependents") ? " (and what depends on it)" : ""}?`;
  if (cannotAsk(ctx)) {
    ctx.ui.notify(`${question} Not reverting without you: run /parallel revert ${args.join(" ")} --yes`, "warning");
    return false;
  }
  if (!(await ctx.ui.confirm("gsd-parallel revert", question))) {
    ctx.ui.notify("Revert cancelled.", "info");
    return false;
  }
  return args;
}

export async function handle(pi, ctx, config, line) {
  const words = splitArgs(line);
  const name = words[0];
  let rest = words.slice(1).filter((w) => w !== "--json");
  if (!name) {
    show(pi, ctx, usage(config), "info");
    return;
  }
  if (name in FOLLOWING) {
    const ok = FOLLOWING[name];
    if (rest.includes("-f") || rest.includes("--follow") || (ok.length && !ok.some((o) => rest.includes(o)))) {
      if (name === "watch") rest = [...rest, "--once"];
      else rest = rest.filter((w) => w !== "-f" && w !== "--follow");
    }
  }
  if (name === "merge") {
    const decided = await merge(pi, ctx, config, rest);
    if (decided === false) return;
    if (Array.isArray(decided)) rest = decided;
  }
  if (name === "revert") {
    const decided = await revertAsk(ctx, rest);
    if (decided === false) return;
    rest = decided;
  }
  const result = await runCli(pi, ctx, config, [name, ...rest]);
  const out = `${result.stdout || ""}`;
  if (result.code === 0) {
    show(pi, ctx, out || errorLine({ ...result, stderr: result.stderr }) || "done", "info");
    return;
  }
  if (out.trim()) {
    show(pi, ctx, out, "warning"); // a report that says something did not land
    return;
  }
  ctx.ui.notify(errorLine(result), "error");
}

// ---------------------------------------------------------------- the session's events
/** The spool the plugin side drains: `<project>/.gsd/parallel/session-events.jsonl`, or null
 * outside a GSD project (GSD's own home, ~/.gsd, is not a project). */
export function findSpool(cwd, env = process.env) {
  const gsdHome = resolve(env.GSD_HOME || join(homedir(), ".gsd"));
  let dir = resolve(cwd || ".");
  for (;;) {
    const gsd = join(dir, ".gsd");
    if (gsd !== gsdHome && existsSync(gsd)) return { root: dir, spool: join(gsd, "parallel", SPOOL) };
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

function sessionId(ctx) {
  try {
    return ctx.sessionManager.getSessionId() || "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * Forwards the user's own session to the plugin side without ever blocking it: each event
 * is one appended line (no child process is awaited in a handler), then a drain by
 * `gsd-parallel session-events` is started and not waited for (debounced; one at a time).
 * Returns null inside a worker: the supervisor reads a worker's events itself.
 */
export function sessionForwarder(pi, config, { env = process.env, delayMs = DRAIN_DELAY_MS } = {}) {
  if (env.GSD_PARALLEL_WORKER === "1") return null;
  let place = null;
  let timer = null;
  let running = false;
  let again = false;
  const completing = new Map(); // toolCallId -> milestoneId, from tool_execution_start

  function drainNow() {
    if (timer) clearTimeout(timer);
    timer = null;
    if (!place) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    const [cmd, ...pre] = config.command && config.command.length ? config.command : ["gsd-parallel"];
    let job;
    try {
      job = Promise.resolve(
        pi.exec(cmd, [...pre, INVOKED_AS, "--project", place.root, "session-events"], {
          cwd: place.root,
          timeout: 60000,
        }),
      );
    } catch {
      job = Promise.resolve();
    }
    job
      .catch(() => undefined)
      .then(() => {
        running = false;
        if (again) {
          again = false;
          drainNow();
        }
      });
  }

  function drainSoon() {
    if (timer || !place) return;
    timer = setTimeout(drainNow, delayMs);
    if (typeof timer.unref === "function") timer.unref();
  }

  function spool(ctx, record) {
    place = place || findSpool(ctx && ctx.cwd, env);
    if (!place) return false;
    try {
      mkdirSync(dirname(place.spool), { recursive: true });
      const line = JSON.stringify({ ...record, session: sessionId(ctx), ts: Date.now() });
      appendFileSync(place.spool, `${line}\n`);
      return true;
    } catch {
      return false; // never break the session over a spool we cannot write
    }
  }

  let unwatch = () => undefined;
  return {
    onSessionStart(_event, ctx) {
      if (spool(ctx, { event: "session_start", cwd: ctx.cwd })) drainSoon();
      if (place && ctx.ui) {
        unwatch();
        unwatch = watchBuiltin(dirname(dirname(place.spool)), (text, level) => ctx.ui.notify(text, level));
      }
    },
    onSessionShutdown(_event, ctx) {
      unwatch();
      if (spool(ctx, { event: "session_end", cwd: ctx.cwd })) drainNow();
    },
    onMessageEnd(event, ctx) {
      const message = (event && event.message) || {};
      const cost = message.usage && message.usage.cost ? Number(message.usage.cost.total) : 0;
      if (message.role !== "assistant" || !(cost > 0)) return;
      const record = { event: "cost", cost_usd: cost, model: message.model || null };
      if (spool(ctx, record)) drainSoon();
    },
    onToolStart(event) {
      if (COMPLETE_TOOLS.has(event.toolName)) completing.set(event.toolCallId, event.args && event.args.milestoneId);
    },
    onToolEnd(event, ctx) {
      if (!COMPLETE_TOOLS.has(event.toolName)) return;
      const asked = completing.get(event.toolCallId);
      completing.delete(event.toolCallId);
      const result = event.result || {};
      const details = result.details || {};
      if (event.isError || result.isError || details.error || details.alreadyComplete) return;
      const milestone = details.milestoneId || asked;
      if (typeof milestone !== "string" || !milestone) return;
      if (spool(ctx, { event: "milestone_complete", milestone })) drainNow();
    },
  };
}

export const BUILTIN_STARTED =
  "GSD's built-in /gsd parallel just started workers of its own, apart from gsd-parallel's " +
  "(and it stops them when this session ends). gsd-parallel is /parallel: /parallel status shows " +
  "its run; /gsd parallel stop stops only GSD's built-in workers.";

/** Whether `.gsd/orchestrator.json` (GSD's built-in parallel state) says a run is active. */
export function builtinRunActive(gsdDir) {
  try {
    const state = JSON.parse(readFileSync(join(gsdDir, "orchestrator.json"), "utf8"));
    return Boolean(state && state.active && Array.isArray(state.workers) && state.workers.length);
  } catch {
    return false;
  }
}

/**
 * Tell the user when GSD's built-in `/gsd parallel start` (typed by habit) starts its own
 * workers: GSD gives extensions no hook before its own command runs, and its messages do
 * not reach extension events, but it always writes `.gsd/orchestrator.json`. A directory
 * watch costs nothing while idle and never keeps GSD alive.
 */
export function watchBuiltin(gsdDir, notify) {
  let warned = builtinRunActive(gsdDir);
  let watcher = null;
  try {
    watcher = watch(gsdDir, { persistent: false }, (_kind, name) => {
      if (name && !`${name}`.startsWith("orchestrator.json")) return;
      const active = builtinRunActive(gsdDir);
      if (active && !warned) notify(BUILTIN_STARTED, "warning");
      warned = active;
    });
  } catch {
    return () => undefined;
  }
  return () => watcher.close();
}

/** Milestones whose status file (`.gsd/parallel/workers/<MID>.status.json`) says complete. */
export function completeMilestones(parallelDir) {
  const found = [];
  let names = [];
  try {
    names = readdirSync(join(parallelDir, "workers"));
  } catch {
    return found;
  }
  for (const name of names) {
    if (!name.endsWith(".status.json")) continue;
    try {
      const data = JSON.parse(readFileSync(join(parallelDir, "workers", name), "utf8"));
      if (data && data.state === "complete" && typeof data.milestoneId === "string") found.push(data.milestoneId);
    } catch {
      // being rewritten: next look
    }
  }
  return found.sort();
}

/**
 * `auto_merge: confirm` inside GSD: the CLI's `start --wait` asks on its terminal when a
 * milestone completes; a run started from GSD asks here, in GSD's own dialog. Without a
 * user to answer (headless GSD says yes to everything) it only says what awaits a merge.
 */
export function mergeAsker(pi, config, { env = process.env, pollMs = POLL_MS } = {}) {
  const asked = new Set();
  let timer = null;
  let busy = false;

  async function look(ctx, root) {
    const fresh = completeMilestones(join(root, ".gsd", "parallel")).filter((m) => !asked.has(m));
    if (!fresh.length) return;
    const status = await runCli(pi, { ...ctx, cwd: root }, config, ["--json", "status"]);
    let data = {};
    try {
      data = JSON.parse(status.stdout);
    } catch {
      return;
    }
    const byId = new Map((data.workers || []).map((w) => [w.id, w]));
    for (const mid of fresh) {
      const w = byId.get(mid);
      if (!w || w.state !== "complete") continue;
      asked.add(mid);
      if (w.merged || data.auto_merge !== "confirm") continue;
      const what = `${mid}${w.title ? ` (${w.title})` : ""}`;
      if (cannotAsk(ctx, env)) {
        ctx.ui.notify(`${what} is complete — awaiting merge: /parallel merge ${mid} --yes`, "info");
        continue;
      }
      const ok = await ctx.ui.confirm("gsd-parallel", `${what} is complete. Merge it into the integration branch?`);
      if (!ok) {
        ctx.ui.notify(`${mid} stays complete — awaiting merge: /parallel merge ${mid} when you are ready.`, "info");
        continue;
      }
      const done = await runCli(pi, { ...ctx, cwd: root }, config, ["merge", mid]);
      show(pi, ctx, `${done.stdout || ""}` || errorLine(done), done.code === 0 ? "info" : "warning");
    }
  }

  return {
    start(ctx, root) {
      if (timer || env.GSD_PARALLEL_WORKER === "1") return;
      // What was complete before this session is not news: `/parallel merge` handles it.
      for (const mid of completeMilestones(join(root, ".gsd", "parallel"))) asked.add(mid);
      timer = setInterval(() => {
        if (busy) return;
        busy = true;
        look(ctx, root)
          .catch(() => undefined)
          .then(() => {
            busy = false;
          });
      }, pollMs);
      if (typeof timer.unref === "function") timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
    look,
  };
}

function guarded(fn) {
  return (event, ctx) => {
    try {
      fn(event, ctx);
    } catch {
      // an event handler must never break the user's session
    }
  };
}

export default function gsdParallel(pi, config = loadConfig(), options = {}) {
  pi.registerCommand("parallel", {
    description: "gsd-parallel: run several milestones at once (/parallel status, start, merge …)",
    getArgumentCompletions: (prefix) => completions(config, prefix),
    handler: async (args, ctx) => {
      try {
        await handle(pi, ctx, config, args);
      } catch (err) {
        ctx.ui.notify(`gsd-parallel: ${err && err.message ? err.message : err}`, "error");
      }
    },
  });
  if (typeof pi.on !== "function") return;
  const forward = sessionForwarder(pi, config, options);
  if (!forward) return;
  const asker = mergeAsker(pi, config, options);
  pi.on(
    "session_start",
    guarded((event, ctx) => {
      forward.onSessionStart(event, ctx);
      const place = findSpool(ctx && ctx.cwd, options.env || process.env);
      if (place && ctx.ui) asker.start(ctx, place.root);
    }),
  );
  pi.on(
    "session_shutdown",
    guarded((event, ctx) => {
      asker.stop();
      forward.onSessionShutdown(event, ctx);
    }),
  );
  pi.on("tool_execution_start", guarded(forward.onToolStart));
  pi.on("tool_execution_end", guarded(forward.onToolEnd));
  pi.on("message_end", guarded(forward.onMessageEnd));
}
