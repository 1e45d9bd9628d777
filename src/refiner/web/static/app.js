// Refiner's web interface: one page, a panel per step of the paper's demonstration (section 3, Figure 2).
// Plain ES module over the JSON API (/docs); charts by Chart.js (/vendor, global `Chart`) when present.

const POLL_MS = 1500;
const JOB_POLL_MS = 400;
const $ = (selector) => document.querySelector(selector);

const state = {
  session: null, // GET /api/session
  account: null, // the address we act as
  tasks: [], // GET /api/tasks
  task: null, // selected task address
  detail: null, // GET /api/tasks/{task}
  me: null, // GET /api/accounts/{account}
  loadedFor: null, // the account the panels show data of
  jobs: {}, // account -> latest job (training or evaluation)
  dataset: {}, // account -> "good" | "bad" (the training panel's choice)
  evals: {}, // "account|task|round" -> evaluation result
  notSelected: new Set(), // "account|task": sortition drew no seat
  inflight: new Set(), // keys of the actions under way (their buttons stay disabled)
  guide: null, // GET /api/tasks/{task}/guide: what the account may do now, and the demo's next step
  statusBy: {}, // account -> its last status line (the line is per account)
  activity: [], // GET /api/activity: auto mode's feed, oldest first
  activitySeq: 0, // the last entry read
  loaded: null, // MNIST pixels shown on the canvas, untouched since picked
  charts: {},
};

// ------------------------------------------------------------------------------------------ formatting

const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const short = (address) => (address ? `${address.slice(0, 6)}…${address.slice(-4)}` : "–");
const pct = (x) => (x == null ? "–" : `${(100 * x).toFixed(2)} %`);
const num = (x, digits = 4) => (x == null ? "–" : Number(x).toFixed(digits));
const same = (a, b) => a && b && a.toLowerCase() === b.toLowerCase();

function labelOf(address) {
  const known = state.session?.accounts.find((a) => same(a.address, address));
  return known ? known.label : short(address);
}

/** "worker 1 0x12ab…cdef" as HTML (the label in bold, the short address muted, full address on hover). */
function who(address) {
  const known = state.session?.accounts.find((a) => same(a.address, address));
  const name = known ? `<b>${escapeHtml(known.label)}</b> ` : "";
  return `<span class="addr" title="${escapeHtml(address)}">${name}<span class="muted">${short(address)}</span></span>`;
}

function eth(wei, digits = 4) {
  if (wei == null) return "–";
  const w = BigInt(wei);
  const unit = 10n ** 18n;
  const sign = w < 0n ? "-" : "";
  const a = w < 0n ? -w : w;
  const step = 10n ** BigInt(18 - digits);
  const rounded = ((a + step / 2n) / step) * step;
  const frac = (rounded % unit).toString().padStart(18, "0").slice(0, digits).replace(/0+$/, "");
  if (rounded === 0n && a > 0n) return `${sign}< 0.${"0".repeat(digits - 1)}1 ETH`; // never show dust as 0
  return `${sign}${rounded / unit}${frac ? "." + frac : ""} ETH`;
}

/** Wei in an amount as the forms take it ("1 ether", "0.4 ether", "500 gwei", "7 wei"); null if unreadable. */
function weiOf(text) {
  const found = /^\s*(\d+)(?:\.(\d+))?\s*(ether|eth|gwei|wei)?\s*$/i.exec(text ?? "");
  if (!found) return null;
  const decimals = { ether: 18, eth: 18, gwei: 9, wei: 0 }[(found[3] ?? "wei").toLowerCase()];
  const frac = found[2] ?? "";
  if (frac.length > decimals) return null;
  return BigInt(found[1]) * 10n ** BigInt(decimals) + BigInt(frac.padEnd(decimals, "0") || "0");
}

/** Whether the form's budget pays for every round it allows; later rounds take the rest from the account. */
function budgetHint() {
  const hint = $("#budget-hint");
  const rounds = Number.parseInt($("#cfg-max_rounds").value, 10);
  const [worker, validator, budget] = ["worker_reward", "validator_reward", "budget"].map((f) => weiOf($(`#cfg-${f}`).value));
  if (!(rounds > 0) || worker == null || validator == null || budget == null) {
    hint.textContent = "";
    return;
  }
  const perRound = worker + validator;
  const total = perRound * BigInt(rounds);
  const covered = perRound > 0n ? budget / perRound : BigInt(rounds);
  const sum = `${rounds} round${rounds === 1 ? "" : "s"} × ${eth(perRound, 6)} = ${eth(total, 6)}`;
  hint.classList.toggle("warn", budget < total);
  hint.textContent =
    budget < total
      ? `${sum}, more than the budget: it pays for ${covered} round${covered === 1n ? "" : "s"}; each later round takes what is missing (up to ${eth(perRound, 6)}) from your account when you start it.`
      : `${sum}: the budget pays for every round${budget > total ? `; ${eth(budget - total, 6)} stays unspent, to withdraw when the task ends` : ""}.`;
}

/** The API's messages speak wei; show ether next to big amounts. */
const prettyWei = (text) => text.replace(/\b(\d{7,}) wei\b/g, (_, w) => `${eth(w, 6)}`);

function taskName(address) {
  const t = state.tasks.find((x) => same(x.address, address));
  return `task ${short(address)}${t ? ` · ${t.status}` : ""}`;
}

// ------------------------------------------------------------------------------------------ the API

/** The session's token, which the server put in this page; every state-changing call sends it. */
const TOKEN = document.querySelector("meta[name='refiner-token']")?.content ?? "";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (!SAFE.has(method.toUpperCase())) init.headers["x-refiner-token"] = TOKEN;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = new Error(detailText(data?.detail) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    error.detail = data?.detail;
    throw error;
  }
  return data;
}

/** FastAPI's detail: a sentence, or a list of {loc, msg} (422). */
function detailText(detail) {
  if (detail == null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${fieldOf(d) || "request"}: ${d.msg}`).join("; ");
  return JSON.stringify(detail);
}

const fieldOf = (d) => (d.loc || []).filter((p) => p !== "body" && p !== "settings").join(".");

let statusSeq = 0;
/** The status line is per account (`account`; null: for every account, e.g. the connection's state). */
function setStatus(text, kind, account = state.account) {
  if (account == null) state.statusBy = {};
  state.statusBy[account ?? "*"] = { text, kind };
  if (account == null || account === state.account) showStatus();
}

function showStatus() {
  const el = $("#status");
  const { text, kind } = state.statusBy[state.account] ?? state.statusBy["*"] ?? { text: "", kind: "ok" };
  el.textContent = prettyWei(text);
  el.dataset.state = kind;
  el.className = `status ${kind}`;
}

/** Record a finished action (a job's progress may overwrite the status line meanwhile): data-seq counts them,
 * data-outcome and data-message keep the last one's, for scripts such as the browser test. */
function finished(outcome, message) {
  const el = $("#status");
  Object.assign(el.dataset, { outcome, message: prettyWei(message), seq: String(++statusSeq) });
}

/** Run one user action: its button stays disabled meanwhile, its message (or error) goes to the status line. */
async function act(key, pending, run) {
  if (state.inflight.has(key)) return null;
  let outcome = "ok";
  let message = "done";
  state.inflight.add(key);
  const account = state.account; // the line of the account that acted, even if the user switches
  const button = document.getElementById(key);
  if (button) button.disabled = true;
  render();
  setStatus(`${pending}…`, "busy", account);
  try {
    const out = await run();
    message = out?.message ?? "done";
    if (out?.gas_used) message += ` (gas ${out.gas_used.toLocaleString("en")})`;
    setStatus(message, "ok", account);
    return out;
  } catch (error) {
    [outcome, message] = ["error", error.message];
    setStatus(message, outcome, account);
    return null;
  } finally {
    state.inflight.delete(key);
    if (button) button.disabled = false; // the next render disables it again if the step is not possible
    await refresh();
    finished(outcome, message);
  }
}

const taskAction = (name, body = {}) =>
  api("POST", `/api/tasks/${state.task}/${name}`, { account: state.account, ...body });

// ------------------------------------------------------------------------------------------ polling

let loading = null;
let queued = null;
let wantFull = false;

/** Reload what the panels show; a call during a load waits for the next one (so it sees its own action).
 * A full load also reads the task list and the account's tasks and rewards; polls do that every third time,
 * as the server answers every read from the chain. */
function refresh(full = true) {
  wantFull ||= full;
  if (!loading) {
    const all = wantFull;
    wantFull = false;
    loading = load(all).finally(() => {
      loading = null;
    });
    return loading;
  }
  queued ??= loading.then(() => {
    queued = null;
    return refresh(false);
  });
  return queued;
}

async function load(full) {
  const account = state.account; // what we load for: the user may switch meanwhile
  try {
    const [session, tasks] = await Promise.all([
      api("GET", "/api/session"),
      full || !state.tasks.length ? api("GET", "/api/tasks") : state.tasks,
    ]);
    state.session = session;
    state.tasks = tasks;
    if (!state.task || !tasks.some((t) => same(t.address, state.task))) state.task = tasks[0]?.address ?? null;
    const task = state.task;
    const needsMe = role() !== "requester" && (full || !same(state.me?.address, account));
    const [detail, me] = await Promise.all([
      task ? api("GET", `/api/tasks/${task}`) : null,
      needsMe ? api("GET", `/api/accounts/${account}`) : state.me,
    ]);
    // after the detail: its read of a settled round's details tells the guide who was paid
    const guide = task ? await api("GET", `/api/tasks/${task}/guide?account=${account}`) : null;
    if (task === state.task && account === state.account) state.guide = guide;
    if (task === state.task) state.detail = detail;
    const i = state.tasks.findIndex((t) => same(t.address, detail?.address));
    if (i >= 0) state.tasks[i] = { ...state.tasks[i], ...summaryOf(detail) }; // fresher than the list
    if (account === state.account) {
      state.me = me;
      state.loadedFor = account;
    }
  } catch (error) {
    setStatus(`cannot reach the server: ${error.message}`, "error", null);
  }
  render();
}

const SUMMARY = ["status", "round", "workers", "seats", "budget_wei"];
const summaryOf = (detail) => Object.fromEntries(SUMMARY.map((k) => [k, detail[k]]));

let ticks = 0;
function poll() {
  if (document.hidden) return;
  refresh(++ticks % 3 === 0);
  pollActivity();
}

async function pollActivity() {
  try {
    const feed = await api("GET", `/api/activity?after=${state.activitySeq}`);
    if (!feed.entries.length) return;
    state.activity = [...state.activity, ...feed.entries].slice(-ACTIVITY_KEPT);
    state.activitySeq = feed.entries.at(-1).seq;
    renderActivity();
  } catch {
    // the next poll tries again; the status line already says when the server is unreachable
  }
}

const ACTIVITY_KEPT = 200;

/** Auto mode's feed, newest first: what the agents did and what they wait for. */
function renderActivity() {
  $("#activity-empty").hidden = state.activity.length > 0;
  const clock = (at) => new Date(at * 1000).toLocaleTimeString([], { hour12: false });
  const items = state.activity
    .slice()
    .reverse()
    .map((e) => `<li class="${e.level}" data-seq="${e.seq}"><time>${clock(e.at)}</time>${escapeHtml(e.text)}</li>`);
  html($("#activity-list"), items.join(""));
}

let pollingJobs = false;
async function pollJobs() {
  if (pollingJobs) return;
  pollingJobs = true;
  for (const [account, job] of Object.entries(state.jobs)) {
    if (job.state !== "running") continue;
    try {
      const now = await api("GET", `/api/jobs/${job.id}`);
      state.jobs[account] = now;
      if (now.state === "done" && now.kind === "evaluate") {
        state.evals[`${account}|${now.task}|${now.result.round}`] = now.result;
      }
      if (now.state !== "running") {
        const what = now.state === "done" ? now.message || "done" : `failed: ${now.message}`;
        setStatus(`${labelOf(account)}: ${now.kind} ${what}`, now.state === "done" ? "ok" : "error", account);
        refresh();
      }
    } catch (error) {
      job.state = "failed";
      job.message = error.message;
    }
  }
  pollingJobs = false;
  renderJobs();
}

// ------------------------------------------------------------------------------------------ rendering

const role = () => state.session?.accounts.find((a) => same(a.address, state.account))?.role;
const manual = () => state.session?.mode !== "auto";
const status = () => state.detail?.status;
const currentRound = () => state.detail?.rounds.at(-1);

/** Enable a control when `ok` and its action is not under way; a disabled one says why (its title). */
function enable(el, ok, key = el.id, reason = "") {
  el.disabled = !ok || state.inflight.has(key);
  el.title = el.disabled ? reason : "";
}

/** Whether the protocol lets this account take a page action now, and why not (the server's guide). */
function allowed(action) {
  if (!manual()) return [false, "auto mode is on: the agents act"];
  const reasons = state.guide?.actions ?? {};
  if (!(action in reasons)) return [false, ""];
  return reasons[action] == null ? [true, ""] : [false, reasons[action]];
}

/** Enable the button of a page action from the guide. */
function enableFor(el, action, extra = true) {
  const [ok, why] = allowed(action);
  enable(el, ok && extra, el.id, why);
}

/** A claim button's state for `round`: [ok, why not]. */
function claimable(round) {
  if (!manual()) return [false, "auto mode is on: the agents act"];
  const why = state.guide?.claims?.[String(round)];
  return why == null ? [true, ""] : [false, why];
}

function render() {
  if (!state.session) return;
  renderHeader();
  for (const panel of document.querySelectorAll("[data-roles]")) {
    panel.hidden = !panel.dataset.roles.split(" ").includes(role());
  }
  renderManage();
  renderBoard();
  renderTraining();
  renderEvaluation();
  renderResults();
  renderJobs();
  renderNext();
  renderActivity();
  showStatus();
  enable($("#create-task"), manual());
  if (state.loadedFor === state.account) document.body.dataset.account = state.account; // for scripts
}

function renderHeader() {
  const select = $("#account");
  if (!select.options.length) {
    for (const group of ["requester", "worker", "validator"]) {
      const optgroup = document.createElement("optgroup");
      optgroup.label = `${group}s`;
      for (const a of state.session.accounts.filter((x) => x.role === group)) {
        optgroup.append(new Option("", a.address));
      }
      select.append(optgroup);
    }
    select.value = state.account;
  }
  for (const option of select.options) {
    const a = state.session.accounts.find((x) => x.address === option.value);
    option.textContent = `${a.label} · ${short(a.address)}`; // the balance is shown once, beside it
  }
  const me = state.session.accounts.find((a) => same(a.address, state.account));
  $("#balance").textContent = me ? `${me.role} · ${eth(me.balance_wei, 4)}` : "";
  $("#mode").value = state.session.mode;
  document.body.classList.toggle("auto", !manual());

  const tasks = $("#task");
  const wanted = state.tasks.map((t) => `${t.address}|${t.status}|${t.round}`).join(",");
  if (tasks.dataset.shown !== wanted) {
    tasks.replaceChildren(
      ...state.tasks.map(
        (t) => new Option(`${short(t.address)} · ${t.status} · round ${t.round}/${t.max_rounds}`, t.address),
      ),
    );
    if (!state.tasks.length) tasks.append(new Option("no task yet", ""));
    tasks.dataset.shown = wanted;
  }
  tasks.value = state.task ?? "";
}

/** Set an element's markup only when it changed (polling must not reset what the user is pointing at). */
const markups = new WeakMap();
function html(el, markup) {
  if (markups.get(el) === markup) return;
  el.innerHTML = markup;
  markups.set(el, markup);
}

/** Table rows for `items` (`row` makes one), or one muted row saying `empty`. */
const rowsOr = (items, row, empty, columns) =>
  items.length ? items.map(row).join("") : `<tr><td colspan="${columns}" class="muted">${empty}</td></tr>`;
/** List items for `items`, or one muted item saying `empty`. */
const itemsOr = (items, item, empty) =>
  items.length ? items.map((x) => `<li>${item(x)}</li>`).join("") : `<li class="muted">${empty}</li>`;
const badge = (status) => `<span class="badge s-${status}">${status}</span>`;
const button = (attribute, value, label, ok, extra = "") =>
  `<button ${attribute}="${value}" ${extra} ${ok ? "" : "disabled"}>${label}</button>`;
const includes = (list, address) => list.some((a) => same(a, address));
const keyIn = (object, address) => Object.keys(object).find((k) => same(k, address));

function facts(el, pairs) {
  html(el, pairs.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${v}</dd>`).join(""));
}

function deadlineText(d) {
  if (!d.deadline) return "–";
  const left = d.deadline - d.now;
  const when = new Date(d.deadline * 1000).toLocaleString();
  if (left <= 0) return `${when} <span class="bad">(passed)</span>`;
  const span =
    left >= 2 * 86400 ? `${(left / 86400).toFixed(1)} days` : left >= 3600 ? `${(left / 3600).toFixed(1)} h` : `${Math.ceil(left / 60)} min`;
  return `${when} <span class="muted">(in ${span}, chain time)</span>`;
}

function renderManage() {
  const d = state.detail;
  $("#manage-empty").hidden = !!d;
  $("#manage-body").hidden = !d;
  if (!d) return;
  const mine = same(d.requester, state.account);
  const s = d.status;
  const c = d.config;
  facts($("#manage-info"), [
    ["Task", who(d.address)],
    ["Status", `<span class="badge s-${s}" data-testid="manage-status">${s}</span>`],
    ["Round", `${d.round} of ${d.max_rounds}`],
    ["Deadline", deadlineText(d)],
    ["Budget", eth(d.budget_wei)],
    ["In escrow", eth(d.escrow_wei)],
    ["Workers' deposits held", eth(d.deposits_held_wei)],
    ["Owed (budget + escrow + deposits)", eth(d.owed_wei)],
    ["Rewards per round", `workers ${eth(c.worker_reward_wei)}, validators ${eth(c.validator_reward_wei)}`],
    ["Sign-up deposit", `${eth(c.sign_up_deposit_wei)} per worker, back with its round-1 submission`],
    ["Rules", `${c.aggregation}${c.mu ? ` (μ ${c.mu})` : ""}, ε ${c.epsilon ?? "none"}, ${c.contribution ?? "unknown"} contribution, target ${pct(c.target_accuracy)}`],
    ["Workers", `${d.workers} of ${d.max_workers}`],
    ["Committee seats", `${d.seats} (τ = ${d.committee_size})`],
  ]);
  const can = mine && manual();
  enableFor($("#btn-open"), "open_recruitment");
  enableFor($("#btn-close"), "close_recruitment");
  enableFor($("#btn-start"), "start_round", d.workers > 0 && d.seats > 0);
  enableFor($("#btn-finalize"), "finalize_round");
  enableFor($("#btn-advance"), "advance");
  enableFor($("#btn-stop"), "stop_training");
  enable($("#btn-withdraw"), can && BigInt(d.budget_wei) > 0n);
  enable($("#btn-fund"), can && s !== "TERMINATED");
  for (const download of [$("#btn-download"), $("#results-download")]) {
    download.href = `/api/tasks/${d.address}/model?account=${state.account}`;
    download.classList.toggle("disabled", !mine);
  }

  html($("#manage-workers"), itemsOr(d.members, who, "nobody has signed up yet"));
  const member = (m) => `<tr><td>${who(m.address)}</td><td class="n">${m.weight}</td></tr>`;
  html($("#manage-committee tbody"), rowsOr(d.committee, member, "no seat claimed yet", 2));

  const done = d.rounds.filter((r) => r.finalized);
  const start = d.initial_test_accuracy == null ? [] : [{ round: 0, test_accuracy: d.initial_test_accuracy }];
  const points = [...start, ...done];
  chart("curve-chart", {
    type: "line",
    data: {
      labels: points.map((r) => String(r.round)), // one tick per round; round 0 is the initial model
      datasets: [
        { label: "test accuracy (%)", data: points.map((r) => r.test_accuracy && 100 * r.test_accuracy) },
        { label: "validation accuracy (%)", data: points.map((r) => r.validation_accuracy && 100 * r.validation_accuracy) },
      ],
    },
    options: {
      elements: { point: { radius: 5 }, line: { tension: 0.2 } },
      plugins: { legend: { labels: { usePointStyle: true, boxWidth: 8, boxHeight: 8 } } },
      scales: {
        x: { title: { display: true, text: "round (0: the initial model)" } },
        y: { suggestedMin: 0, suggestedMax: 100, title: { display: true, text: "accuracy (%)" } },
      },
    },
  });
}

function renderBoard() {
  if (role() !== "worker") return;
  const myTasks = state.me?.tasks ?? [];
  const row = (t) => {
    const free = t.max_workers - t.workers;
    const selected = same(t.address, state.task);
    const [may, why] = selected ? allowed("sign_up") : [manual() && t.status === "RECRUITING" && free > 0, ""];
    const ok = may && !state.inflight.has(`sign-up|${t.address}`);
    const action = includes(myTasks, t.address)
      ? `<span class="good">signed up ✓</span>`
      : button("data-signup", t.address, "Sign up", ok, why ? `title="${escapeHtml(why)}"` : "");
    return `<tr data-task="${t.address}"><td>${who(t.address)}</td><td>${badge(t.status)}</td>
      <td class="n">${t.round} / ${t.max_rounds}</td><td class="n">${free} of ${t.max_workers}</td>
      <td class="n">${t.seats} / τ ${t.committee_size}</td><td>${action}</td></tr>`;
  };
  html($("#board-table tbody"), rowsOr(state.tasks, row, "no task yet", 6));
  const link = (t) => `<a href="#" data-select="${t}">${escapeHtml(taskName(t))}</a>`;
  html($("#my-tasks"), itemsOr(myTasks, link, "none: sign up to a recruiting task"));
}

function renderTraining() {
  if (role() !== "worker") return;
  const me = state.account;
  const mine = state.tasks.filter((t) => includes(state.me?.tasks ?? [], t.address));
  const busy = state.jobs[me]?.state === "running";
  $(`#dataset-${state.dataset[me] ?? "good"}`).checked = true;
  const trainRow = (t) => {
    const ok = manual() && !busy && !state.inflight.has(`train|${t.address}`);
    return `<tr><td>${who(t.address)}</td><td class="n">${t.round}</td>
      <td>${button("data-train", t.address, "Train &amp; submit", ok, 'class="primary"')}</td></tr>`;
  };
  const training = mine.filter((t) => t.status === "TRAINING");
  html($("#train-table tbody"), rowsOr(training, trainRow, "none of your tasks is TRAINING", 3));

  const d = state.detail;
  const member = d && includes(d.members, me);
  const claimRow = (r) => {
    const [accepted, rejected] = [includes(r.accepted, me), includes(r.rejected, me)];
    const c = contributionOf(r, me);
    const paid = paidTo(r.worker_payouts_wei, me);
    const due = entitlement(r, me);
    let verdict = `<span class="muted">no submission</span>`;
    if (!r.consensus) verdict = `<span class="muted">no consensus</span>`;
    else if (accepted) verdict = `<span class="good">accepted ✓</span>`;
    else if (rejected) verdict = `<span class="bad">rejected ✗</span>`;
    verdict += reasonOf(r, me);
    const [may, why] = claimable(r.round);
    const ok = may && !state.inflight.has(`claim|${d.address}|${r.round}`);
    const later = paidLater(d.rounds, r.round, "worker_payouts_wei", me);
    let cell = button("data-claim", r.round, "Claim reward", ok, why ? `title="${escapeHtml(why)}"` : "");
    if (paid) cell = `<span class="good" data-testid="paid">paid ${eth(paid)}</span>`;
    else if (later && due) cell = `<span class="good">paid with round ${later}'s claim</span>`;
    return `<tr><td class="n">${r.round}</td><td>${verdict}</td><td class="n">${c == null ? "–" : num(c)}</td>
      <td class="n">${eth(paid || due)}</td><td>${cell}</td></tr>`;
  };
  const finalized = member ? d.rounds.filter((r) => r.finalized) : [];
  const none = member ? "no finalized round yet" : "you are not a worker of the selected task";
  html($("#worker-claims tbody"), rowsOr(finalized, claimRow, none, 5));
  renderRewards("#worker-rewards");
}

function renderRewards(selector) {
  const reward = (r) => `<b class="good">${eth(r.amount_wei)}</b> from ${escapeHtml(taskName(r.task))}, round ${r.round}`;
  html($(selector), itemsOr(state.me?.rewards ?? [], reward, "nothing received yet"));
}

/** Why a worker was rejected or paid nothing, in the words of refiner.reasons (the server's view). */
const reasonOf = (r, a) =>
  keyIn(r.reasons ?? {}, a) ? `<div class="muted reason">${escapeHtml(r.reasons[keyIn(r.reasons, a)])}</div>` : "";
const contributionOf = (r, a) => (keyIn(r.contributions, a) ? r.contributions[keyIn(r.contributions, a)] / 1e6 : null);
const paidTo = (payouts, a) => (keyIn(payouts, a) ? payouts[keyIn(payouts, a)] : null);
/** The first round after `round` whose claim paid `a` (rewards accrue: one claim pays earlier rounds). */
const paidLater = (rounds, round, side, a) => rounds.find((x) => x.round > round && paidTo(x[side], a))?.round;

/** What a worker may claim: worker reward × c / Σc over accepted workers with c > 0 (README, contract). */
function entitlement(r, worker) {
  if (!r.consensus || !includes(r.accepted, worker)) return 0n;
  const total = r.accepted.map((a) => BigInt(r.contributions[a] ?? 0)).reduce((x, c) => (c > 0n ? x + c : x), 0n);
  const mine = BigInt(r.contributions[keyIn(r.contributions, worker)] ?? 0);
  if (mine <= 0n || total === 0n) return 0n;
  return (BigInt(state.detail.config.worker_reward_wei) * mine) / total;
}

function renderEvaluation() {
  if (role() !== "validator") return;
  const [d, me, r] = [state.detail, state.account, currentRound()];
  const seat = d?.committee.find((m) => same(m.address, me));
  const drawn = d && state.notSelected.has(`${me}|${d.address}`);
  let seats = seat ? `<b data-testid="my-seats">${seat.weight}</b> of ${d.seats}` : "none";
  if (drawn) seats = "not selected by the sortition";
  facts($("#eval-info"), [
    ["Task", d ? who(d.address) : "–"],
    ["Status", d ? `${badge(d.status)}, round ${d.round}` : "–"],
    ["My seats", seats],
    ["This round", r ? `${r.submissions} submissions, ${r.commits} commits, ${r.reveals} reveals` : "–"],
  ]);
  const busy = state.jobs[me]?.state === "running";
  enableFor($("#btn-claim-seat"), "claim_seat", !drawn);
  enableFor($("#btn-evaluate"), "evaluate", !busy);
  enableFor($("#btn-commit"), "commit_manifest", !busy);
  enableFor($("#btn-reveal"), "reveal_manifest");

  const result = d && latestEvaluation(d.address);
  $("#eval-result").hidden = !result;
  if (result) {
    const verdict = (ok) => (ok ? '<span class="good">✓ qualified</span>' : '<span class="bad">✗ not qualified</span>');
    const row = (w) => `<tr data-worker="${w.worker}"><td>${who(w.worker)}</td><td class="n">${w.samples}</td>
      <td class="n">${num(w.loss)}</td><td class="verdict">${verdict(w.qualified)}</td>
      <td class="n">${num(w.contribution)}</td></tr>`;
    html($("#eval-table tbody"), result.workers.map(row).join(""));
    html(
      $("#eval-accuracy"),
      `Round ${result.round}: the aggregate of the qualified updates reaches <b>${pct(result.accuracy)}</b>
      validation accuracy (loss ${num(result.loss)}); updates qualify ${d.config.epsilon == null ? "" : `with a validation loss below ε = ${d.config.epsilon}${
        d.config.contribution === "trusted-data" ? " and " : ""}`}${
        d.config.contribution === "trusted-data" ? "when they pass the screen against the validation data" : ""
      }.`,
    );
  }

  const claimRow = (x) => {
    const agreed = includes(x.agreeing, me);
    let vote = `<span class="muted">${x.consensus ? "did not reveal" : "no consensus"}</span>`;
    if (agreed) vote = `<span class="good">agreed ✓</span>`;
    else if (includes(x.disagreeing, me)) vote = `<span class="bad">disagreed ✗</span>`;
    const paid = paidTo(x.validator_payouts_wei, me);
    const due = agreed ? (BigInt(d.config.validator_reward_wei) * BigInt(seat.weight)) / BigInt(d.seats) : 0n;
    const [may, why] = claimable(x.round);
    const ok = may && !state.inflight.has(`claim|${d.address}|${x.round}`);
    const later = paidLater(d.rounds, x.round, "validator_payouts_wei", me);
    let cell = button("data-claim", x.round, "Claim reward", ok, why ? `title="${escapeHtml(why)}"` : "");
    if (paid) cell = `<span class="good" data-testid="paid">paid ${eth(paid)}</span>`;
    else if (later && due) cell = `<span class="good">paid with round ${later}'s claim</span>`;
    return `<tr><td class="n">${x.round}</td><td>${vote}</td><td class="n">${eth(paid || due)}</td><td>${cell}</td></tr>`;
  };
  const finalized = seat ? d.rounds.filter((x) => x.finalized) : [];
  const none = seat ? "no finalized round yet" : "you hold no seat on the selected task";
  html($("#validator-claims tbody"), rowsOr(finalized, claimRow, none, 4));
  renderRewards("#validator-rewards");
}

/** This validator's evaluation of the latest round it evaluated on `task` (kept in the page). */
function latestEvaluation(task) {
  const prefix = `${state.account}|${task}|`;
  const rounds = Object.keys(state.evals).filter((k) => k.startsWith(prefix)).map((k) => Number(k.split("|")[2]));
  return rounds.length ? state.evals[prefix + Math.max(...rounds)] : null;
}

function renderResults() {
  const d = state.detail;
  const rounds = d?.rounds ?? [];
  $("#results-empty").hidden = rounds.length > 0;
  $("#results-body").hidden = rounds.length === 0;
  if (!rounds.length) return;
  const weight = (v) => d.committee.find((m) => same(m.address, v))?.weight ?? 0;
  const validators = (list, payouts) =>
    list.map((v) => {
      const paid = paidTo(payouts, v);
      return `${who(v)} ×${weight(v)}${paid ? ` <span class="good">${eth(paid)}</span>` : ""}`;
    }).join("<br>") || "–";
  const people = (list) => list.map(who).join("<br>") || "–";
  const roundRow = (r) => {
    let consensus = `<span class="muted">${r.finalized ? "–" : "in progress"}</span>`;
    if (r.consensus === true) consensus = `<span class="good">✓</span>`;
    if (r.consensus === false) consensus = `<span class="bad">✗ none</span>`;
    return `<tr data-round="${r.round}"><td class="n">${r.round}</td><td>${consensus}</td>
      <td class="n">${pct(r.validation_accuracy)} / ${pct(r.test_accuracy)}</td>
      <td>${people(r.accepted)}</td><td>${people(r.rejected)}</td>
      <td>${validators(r.agreeing, r.validator_payouts_wei)}</td><td>${validators(r.disagreeing, {})}</td>
      <td class="n">${r.gas_used.toLocaleString("en")}</td></tr>`;
  };
  html($("#results-table tbody"), rounds.map(roundRow).join(""));

  // the round whose workers are detailed: the latest, unless the user picked an earlier one
  const pick = $("#results-round");
  const latest = String(rounds.at(-1).round);
  if (pick.dataset.latest !== latest) {
    const keep = pick.value && pick.value !== pick.dataset.latest ? pick.value : latest;
    pick.replaceChildren(...rounds.map((r) => new Option(String(r.round), String(r.round))));
    pick.value = keep;
    pick.dataset.latest = latest;
  }
  const r = rounds.find((x) => String(x.round) === pick.value) ?? rounds.at(-1);
  const workers = [...new Set([...r.accepted, ...r.rejected, ...d.members])];
  const workerRow = (w) => {
    let verdict = `<span class="muted">–</span>`;
    if (r.accepted.includes(w)) verdict = `<span class="good">accepted</span>`;
    if (r.rejected.includes(w)) verdict = `<span class="bad">rejected</span>`;
    verdict += reasonOf(r, w);
    const [c, paid] = [contributionOf(r, w), paidTo(r.worker_payouts_wei, w)];
    return `<tr><td>${who(w)}</td><td>${verdict}</td><td class="n">${c == null ? "–" : num(c)}</td>
      <td class="n">${eth(entitlement(r, w))}</td><td class="n">${paid ? eth(paid) : "–"}</td></tr>`;
  };
  html($("#results-workers tbody"), workers.map(workerRow).join(""));
  const toEth = (wei) => Number(BigInt(wei ?? 0)) / 1e18;
  // both axes put their zero on the same line (a contribution below zero shows below it)
  const cs = workers.map((w) => contributionOf(r, w) ?? 0);
  const ethMax = Math.max(1e-9, ...workers.map((w) => Math.max(toEth(entitlement(r, w)), toEth(paidTo(r.worker_payouts_wei, w)))));
  const cMax = Math.max(1e-9, ...cs);
  const below = Math.min(0, ...cs) / cMax; // ≤ 0: how far below zero, as a share of the top
  chart("payout-chart", {
    type: "bar",
    data: {
      labels: workers.map(labelOf),
      datasets: [
        { label: "contribution", data: workers.map((w) => contributionOf(r, w) ?? 0), yAxisID: "c" },
        { label: "entitled (ETH)", data: workers.map((w) => toEth(entitlement(r, w))), yAxisID: "eth" },
        { label: "paid (ETH)", data: workers.map((w) => toEth(paidTo(r.worker_payouts_wei, w))), yAxisID: "eth" },
      ],
    },
    options: {
      scales: {
        c: { position: "left", min: below * cMax * 1.05, max: cMax * 1.05, title: { display: true, text: `${d.config.contribution ?? ""} contribution`.trim() } },
        eth: { position: "right", min: below * ethMax * 1.05, max: ethMax * 1.05, grid: { drawOnChartArea: false }, title: { display: true, text: "ETH" } },
      },
    },
  });
}

function renderJobs() {
  const job = state.jobs[state.account];
  for (const [kind, prefix] of [["train", "train"], ["evaluate", "eval"]]) {
    const mine = job?.kind === kind;
    $(`#${prefix}-job`).hidden = !mine;
    if (!mine) continue;
    $(`#${prefix}-progress`).value = job.progress;
    let text = job.state === "failed" ? `failed: ${job.message}` : job.message || job.state;
    if (job.state === "done" && kind === "evaluate") {
      text = `evaluated the ${job.result.workers.length} updates of round ${job.result.round}`;
    }
    if (job.state === "done" && kind === "train") text += ` (${job.result.dataset} dataset)`;
    $(`#${prefix}-message`).textContent = `${Math.round(100 * job.progress)} % · ${text}`;
    $(`#${prefix}-message`).className = job.state === "failed" ? "bad" : job.state === "done" ? "good" : "";
  }
}

/** Create a chart once, then only swap its data when the data changed (no flicker while polling). */
function chart(id, config) {
  if (!window.Chart) return;
  const fresh = JSON.stringify([config.data, config.options?.scales ?? null]);
  const existing = state.charts[id];
  if (existing) {
    if (existing.shown === fresh) return;
    existing.chart.data = config.data;
    if (config.options?.scales) existing.chart.options.scales = config.options.scales; // e.g. the shared zero
    existing.chart.update();
    existing.shown = fresh;
    return;
  }
  const options = { responsive: true, maintainAspectRatio: false, animation: { duration: 300 }, ...config.options };
  state.charts[id] = { chart: new window.Chart($(`#${id}`), { ...config, options }), shown: fresh };
}

// ------------------------------------------------------------------------------------------ task form

function readSettings(form) {
  const settings = { durations: {} };
  for (const el of form.elements) {
    if (!el.name || el.value.trim() === "") continue;
    let value = el.value.trim();
    if (el.dataset.type === "int") value = Number.parseInt(value, 10);
    if (el.dataset.type === "float") value = Number(value);
    if (el.name.startsWith("durations.")) settings.durations[el.name.slice(10)] = value;
    else settings[el.name] = value;
  }
  return settings;
}

function showFormErrors(form, error) {
  const list = $("#config-errors");
  for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
  if (!error) {
    list.hidden = true;
    list.replaceChildren();
    return;
  }
  const items = Array.isArray(error.detail) ? error.detail : [{ loc: [], msg: error.message }];
  list.replaceChildren(
    ...items.map((d) => {
      const li = document.createElement("li");
      const field = fieldOf(d);
      li.textContent = field ? `${field}: ${d.msg}` : d.msg;
      form.elements.namedItem(field)?.classList.add("invalid");
      return li;
    }),
  );
  list.hidden = false;
}

async function createTask(event) {
  event.preventDefault();
  const form = event.target;
  showFormErrors(form, null);
  await act("create-task", "deploying the task contract", async () => {
    try {
      const task = await api("POST", "/api/tasks", { account: state.account, settings: readSettings(form) });
      state.task = task.address;
      return { message: `task ${short(task.address)} created (${task.status}, budget ${eth(task.budget_wei)})` };
    } catch (error) {
      showFormErrors(form, error);
      throw error;
    }
  });
}

// ------------------------------------------------------------------------------------------ drawing

const pad = () => $("#draw").getContext("2d", { willReadFrequently: true });

function clearPad() {
  const ctx = pad();
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, 280, 280);
  state.loaded = null;
  $("#mnist-label").textContent = "";
  showPreview(new Array(784).fill(0));
}

function setUpDrawing() {
  const canvas = $("#draw");
  let last = null;
  const at = (e) => {
    const box = canvas.getBoundingClientRect();
    return [((e.clientX - box.left) * canvas.width) / box.width, ((e.clientY - box.top) * canvas.height) / box.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    canvas.setPointerCapture(e.pointerId);
    if (state.loaded) clearPad(); // drawing starts a new digit
    last = at(e);
    stroke(last, last);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const next = at(e);
    stroke(last, next);
    last = next;
  });
  const end = () => {
    if (last) showPreview(toPixels());
    last = null;
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

function stroke([x0, y0], [x1, y1]) {
  const ctx = pad();
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 22;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}

/** MNIST-style: crop the stroke, scale its box to 20×20, centre its mass in 28×28; grey levels in [0, 1]. */
function toPixels() {
  const size = 280;
  const img = pad().getImageData(0, 0, size, size).data;
  const grey = (x, y) => (x < 0 || y < 0 || x >= size || y >= size ? 0 : img[4 * (y * size + x)] / 255);
  let [x0, y0, x1, y1] = [size, size, -1, -1];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (grey(x, y) > 0.1) [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x), Math.max(y1, y)];
    }
  }
  const out = new Array(784).fill(0);
  if (x1 < 0) return out;
  const side = Math.max(x1 - x0 + 1, y1 - y0 + 1);
  const [cx, cy] = [(x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2];
  const step = side / 20;
  const box = new Array(400).fill(0); // area average of each of the 20×20 cells
  for (let ty = 0; ty < 20; ty++) {
    for (let tx = 0; tx < 20; tx++) {
      const sx0 = Math.floor(cx - side / 2 + tx * step);
      const sy0 = Math.floor(cy - side / 2 + ty * step);
      const n = Math.max(1, Math.round(step));
      let sum = 0;
      for (let dy = 0; dy < n; dy++) for (let dx = 0; dx < n; dx++) sum += grey(sx0 + dx, sy0 + dy);
      box[ty * 20 + tx] = sum / (n * n);
    }
  }
  let [mass, mx, my] = [0, 0, 0];
  box.forEach((v, i) => {
    mass += v;
    mx += v * (i % 20);
    my += v * Math.floor(i / 20);
  });
  const [ox, oy] = [Math.round(13.5 - mx / mass), Math.round(13.5 - my / mass)];
  box.forEach((v, i) => {
    const [x, y] = [(i % 20) + ox, Math.floor(i / 20) + oy];
    if (x >= 0 && y >= 0 && x < 28 && y < 28) out[y * 28 + x] = Math.min(1, v);
  });
  return out;
}

function showPixels(canvas, pixels, scale) {
  const ctx = canvas.getContext("2d");
  for (let i = 0; i < 784; i++) {
    const v = Math.round(255 * pixels[i]);
    ctx.fillStyle = `rgb(${v},${v},${v})`;
    ctx.fillRect((i % 28) * scale, Math.floor(i / 28) * scale, scale, scale);
  }
}

const showPreview = (pixels) => showPixels($("#preview"), pixels, 1);

async function pickMnist(button) {
  const index = Number.parseInt($("#mnist-index").value, 10);
  await act(button.id, `fetching MNIST test image ${index}`, async () => {
    const digit = await api("GET", `/api/mnist/${Number.isNaN(index) ? -1 : index}`);
    clearPad();
    showPixels($("#draw"), digit.pixels, 10);
    showPreview(digit.pixels);
    state.loaded = digit.pixels;
    $("#mnist-label").textContent = `Test image ${digit.index}: labelled ${digit.label}.`;
    return { message: `MNIST test image ${digit.index} (label ${digit.label}) is on the canvas` };
  });
}

async function predict(button) {
  const pixels = state.loaded ?? toPixels();
  showPreview(pixels);
  if (!pixels.some((v) => v > 0)) {
    const message = "draw a digit first (or pick an MNIST test image)";
    setStatus(message, "error");
    finished("error", message);
    return;
  }
  const withModel = state.detail?.rounds.some((r) => r.finalized && r.consensus);
  await act(button.id, "classifying", async () => {
    const body = { pixels, ...(withModel ? { task: state.task } : {}) };
    const out = await api("POST", "/api/predict", body);
    $("#prediction").textContent = String(out.prediction);
    const p = out.probabilities[out.prediction];
    $("#prediction-source").textContent = `global model of task ${short(out.task)} after round ${out.round}: ${pct(p)} sure`;
    chart("prob-chart", {
      type: "bar",
      data: {
        labels: [...Array(10).keys()].map(String),
        datasets: [{ label: "probability", data: out.probabilities }],
      },
      options: { plugins: { legend: { display: false } }, scales: { y: { min: 0, max: 1 } } },
    });
    return { message: `the model reads a ${out.prediction} (${pct(p)})` };
  });
}

// ------------------------------------------------------------------------------------------ wiring

const manageLabels = {
  "open-recruitment": "opening recruitment",
  "close-recruitment": "closing recruitment",
  "start-round": "starting the round (escrowing its rewards)",
  "finalize-round": "settling the round",
  advance: "moving past the deadline",
  "stop-training": "stopping the task",
  withdraw: "withdrawing the budget",
};

const validatorLabels = {
  "claim-seat": "drawing the sortition and claiming seats",
  "commit-manifest": "committing the manifest",
  "reveal-manifest": "revealing the manifest",
};

async function startJob(key, pending, name, body) {
  const [account, task] = [state.account, state.task]; // the user may switch while the request runs
  const kind = name === "train" ? "train" : "evaluate";
  await act(key, pending, async () => {
    const out = await taskAction(name, body);
    state.jobs[account] = { id: out.job, kind, task, state: "running", progress: 0, message: out.message };
    return out;
  });
}

function switchTo(account) {
  if (!account || account === state.account) return;
  state.account = account;
  $("#account").value = account;
  localStorage.setItem("refiner.account", state.account);
  [state.me, state.loadedFor, state.guide] = [null, null, null];
  render();
  refresh();
}

/** The page actions a step's button performs, to highlight the one that is next. */
const NEXT_BUTTON = {
  "open-recruitment": "#btn-open",
  "close-recruitment": "#btn-close",
  "start-round": "#btn-start",
  "finalize-round": "#btn-finalize",
  advance: "#btn-advance",
  "claim-seat": "#btn-claim-seat",
  evaluate: "#btn-evaluate",
  "commit-manifest": "#btn-commit",
  "reveal-manifest": "#btn-reveal",
};

/** The demo's next step: named, its button highlighted for the account that takes it, and one click to
 * take it for every hosted account it is due for. */
function renderNext() {
  const next = manual() ? state.guide?.next : null;
  const bar = $("#next");
  // on a participant's own server, what it waits for when it has nothing to do (others act)
  const waiting = !state.session.demo && !next ? state.guide?.waiting : null;
  bar.hidden = !next && !waiting;
  for (const el of document.querySelectorAll(".next")) el.classList.remove("next");
  $("#next-do").hidden = !next;
  if (!next) {
    $("#next-switch").hidden = true;
    if (waiting) $("#next-text").textContent = waiting;
    return;
  }
  $("#next-text").textContent = next.text;
  const mine = same(next.account, state.account);
  $("#next-switch").hidden = mine;
  $("#next-switch").textContent = `Switch to ${next.label}`;
  const many = next.accounts.length > 1;
  const role = state.session.accounts.find((a) => same(a.address, next.account))?.role ?? "";
  $("#next-do").textContent = many ? `Do it for ${next.accounts.length} ${role}s` : mine ? "Do it" : `Do it as ${next.label}`;
  const busy = [next.account, ...next.accounts].some((a) => state.jobs[keyIn(state.jobs, a) ?? a]?.state === "running");
  if (busy) $("#next-text").textContent += " (once the jobs under way have finished)";
  enable($("#next-do"), !busy, "next-do", busy ? "waiting for the jobs under way" : "");
  if (!mine) return;
  let target = NEXT_BUTTON[next.action] && $(NEXT_BUTTON[next.action]);
  if (next.action === "sign-up") target = $(`[data-signup="${state.task}"]`);
  if (next.action === "train") target = $(`[data-train="${state.task}"]`);
  if (next.action === "claim-reward") target = $(`#panel-${role === "worker" ? "training" : "evaluation"} [data-claim="${next.round}"]`);
  target?.classList.add("next");
}

const NEXT_LABELS = {
  train: "training and submitting (a job per worker)",
  evaluate: "evaluating (a job per validator)",
  "claim-reward": "claiming",
};

/** Take the next step for every hosted account it is due for (the server checks each one). */
async function doNext() {
  const next = state.guide?.next;
  if (!next) return;
  const task = state.task;
  const accounts = next.accounts.length ? next.accounts : [next.account];
  const label = NEXT_LABELS[next.action] ?? manageLabels[next.action] ?? validatorLabels[next.action] ?? next.action;
  await act("next-do", `${label} for ${accounts.length} account${accounts.length === 1 ? "" : "s"}`, async () => {
    const said = [];
    for (const account of accounts) {
      const body = { account };
      if (next.action === "train") body.dataset = state.dataset[account] ?? "good";
      if (next.action === "claim-reward") body.round = next.round;
      const out = await api("POST", `/api/tasks/${task}/${next.action}`, body);
      if (out.job) {
        const kind = next.action === "train" ? "train" : "evaluate";
        state.jobs[account] = { id: out.job, kind, task, state: "running", progress: 0, message: out.message };
      }
      if (next.action === "claim-seat" && out.message.includes("not selected")) state.notSelected.add(`${account}|${task}`);
      said.push(`${labelOf(account)}: ${out.message}`);
    }
    return { message: said.join("; ") };
  });
}

function wire() {
  $("#account").addEventListener("change", (e) => switchTo(e.target.value));
  $("#next-switch").addEventListener("click", () => switchTo(state.guide?.next?.account));
  $("#next-do").addEventListener("click", doNext);
  $("#task").addEventListener("change", (e) => {
    state.task = e.target.value || null;
    refresh();
  });
  $("#mode").addEventListener("change", (e) => {
    const mode = e.target.value; // read it now: renders show the server's mode until it switched
    act("mode", `switching to ${mode} mode`, async () => {
      const session = await api("POST", "/api/mode", { mode });
      return { message: session.mode === "auto" ? "auto mode: the hosted agents act by themselves" : "manual mode: act by hand" };
    });
  });
  $("#task-form").addEventListener("submit", createTask);
  for (const field of ["max_rounds", "worker_reward", "validator_reward", "budget"]) {
    $(`#cfg-${field}`).addEventListener("input", budgetHint);
  }
  budgetHint();
  $("#cfg-aggregation").addEventListener("change", (e) => {
    $("#cfg-mu").value = e.target.value === "fedprox" ? "0.01" : "0";
  });
  for (const button of document.querySelectorAll("[data-action]")) {
    const name = button.dataset.action;
    button.addEventListener("click", () => act(button.id, manageLabels[name], () => taskAction(name)));
  }
  $("#btn-fund").addEventListener("click", (e) =>
    act(e.target.id, "funding", () => taskAction("fund", { amount: $("#fund-amount").value.trim() })),
  );
  for (const link of [$("#btn-download"), $("#results-download")]) {
    link.addEventListener("click", (e) => {
      const refused = link.classList.contains("disabled");
      if (refused) e.preventDefault();
      const message = refused
        ? "only the task's requester can retrieve its global model"
        : "downloading the latest global model (safetensors)";
      setStatus(message, refused ? "error" : "ok");
      finished(refused ? "error" : "ok", message);
    });
  }
  for (const button of document.querySelectorAll("[data-vaction]")) {
    const name = button.dataset.vaction;
    button.addEventListener("click", () => {
      const drawn = `${state.account}|${state.task}`;
      act(button.id, validatorLabels[name], async () => {
        const out = await taskAction(name);
        if (out.message.includes("not selected")) state.notSelected.add(drawn);
        return out;
      });
    });
  }
  $("#btn-evaluate").addEventListener("click", () => startJob("btn-evaluate", "starting the evaluation", "evaluate"));
  document.addEventListener("click", (e) => {
    const t = e.target.closest("[data-signup],[data-train],[data-claim],[data-select]");
    if (!t) return;
    e.preventDefault();
    if (t.dataset.signup) {
      state.task = t.dataset.signup;
      act(`sign-up|${t.dataset.signup}`, "signing up", () => taskAction("sign-up"));
    } else if (t.dataset.train) {
      state.task = t.dataset.train;
      const dataset = state.dataset[state.account] ?? "good";
      startJob(`train|${t.dataset.train}`, `starting training on the ${dataset} dataset`, "train", { dataset });
    } else if (t.dataset.claim) {
      const round = Number(t.dataset.claim);
      act(`claim|${state.task}|${round}`, `claiming the reward of round ${round}`, () => taskAction("claim-reward", { round }));
    } else if (t.dataset.select) {
      state.task = t.dataset.select;
      refresh();
    }
  });
  for (const radio of document.querySelectorAll("input[name=dataset]")) {
    radio.addEventListener("change", () => {
      state.dataset[state.account] = radio.value;
    });
  }
  $("#results-round").addEventListener("change", () => renderResults());
  $("#btn-clear").addEventListener("click", clearPad);
  $("#btn-mnist").addEventListener("click", (e) => pickMnist(e.target));
  $("#btn-predict").addEventListener("click", (e) => predict(e.target));
  setUpDrawing();
}

async function main() {
  wire();
  clearPad();
  const session = await api("GET", "/api/session");
  state.session = session;
  const saved = localStorage.getItem("refiner.account");
  state.account = session.accounts.some((a) => a.address === saved) ? saved : session.accounts[0].address;
  $("#dataset-choice").hidden = !session.demo; // a participant's own server has its own data only
  await refresh();
  pollActivity();
  const hosted = session.demo
    ? `${session.accounts.length} hosted accounts`
    : `your ${session.accounts[0].role} account ${short(session.accounts[0].address)}`;
  setStatus(`connected: registry ${short(session.registry)}, ${hosted}, ${session.mode} mode`, "ok", null);
  setInterval(poll, POLL_MS);
  setInterval(pollJobs, JOB_POLL_MS);
}

main().catch((error) => setStatus(`cannot start: ${error.message}`, "error", null));
