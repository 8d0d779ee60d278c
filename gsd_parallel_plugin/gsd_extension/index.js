// /parallel inside GSD: runs the installed gsd-parallel (config.json, written by
// `gsd-parallel gsd-extension install`) with pi.exec and shows what it says.
// Plain ES module, no build step, no dependencies.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const TIMEOUT_MS = 120000;
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

export function completions(config, prefix) {
  const text = prefix || "";
  if (/\s/.test(text)) return null; // only the subcommand is completed
  const items = (config.subcommands || [])
    .filter((c) => c.name.startsWith(text))
    .map((c) => ({ value: c.name, label: c.name, description: `${c.usage} — ${c.summary}`.trim() }));
  return items.length ? items : null;
}

function usage(config) {
  const names = (config.subcommands || []).map((c) => c.name).join("|");
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
    pi.sendMessage({ customType: "gsd-parallel", content: body, display: true, details: {} });
  } else {
    ctx.ui.notify(body, level);
  }
}

export async function runCli(pi, ctx, config, args) {
  const [cmd, ...pre] = config.command && config.command.length ? config.command : ["gsd-parallel"];
  return pi.exec(cmd, [...pre, ...args], { cwd: ctx.cwd, timeout: TIMEOUT_MS });
}

/** `/parallel merge`: a real merge needs the user's yes (GSD's dialog), or --yes. */
async function merge(pi, ctx, config, rest) {
  const yes = rest.includes("--yes") || rest.includes("-y");
  const args = rest.filter((a) => a !== "--yes" && a !== "-y");
  if (args.includes("--dry-run")) return null;
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
  if (!ctx.hasUI) {
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

export default function gsdParallel(pi, config = loadConfig()) {
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
}
