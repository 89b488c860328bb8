// downloader2 admin page. Plain JavaScript, no framework, no build step, no external requests: it talks only to
// this service's /api/v1 routes and its WebSocket. Every piece of text from the service (titles and file names come
// from indexers and torrents and are hostile) reaches the page through text nodes built by el(); nothing here ever
// assigns HTML markup. The admin token lives in sessionStorage (gone when the tab closes).
'use strict';

const TOKEN_KEY = 'downloader2.adminToken';
const PAGE_SIZE = 25;
const WEBHOOK_POLL_MS = 15000;
const ACTOR = 'admin-ui';
const STATES = ['pending', 'searching', 'matching', 'needs_approval', 'auto_approved', 'approved', 'downloading',
  'converting', 'placing', 'completed', 'rejected', 'failed', 'cancelled'];
const FINISHED = new Set(['completed', 'rejected', 'cancelled']);

const ui = {
  token: sessionStorage.getItem(TOKEN_KEY),
  filter: { state: '', q: '', offset: 0 },
  view: null,          // 'signin' | 'queue' | 'ticket'
  ticketId: null,      // shown ticket
  renderedTicketId: null, // the ticket the view was last rendered for
  typed: {},           // text typed into its inputs, kept while states without those inputs pass
  socket: null,
  socketRetryMs: 1000,
  refreshTimer: null,
  webhookTimer: null,  // the next look at the catalog webhook's backlog
};

// ---------------------------------------------------------------------------------------------------------------
// DOM building: el('tag.class', {attributes, on: {event: fn}}, ...children). Children are nodes or text.

function el(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const node = document.createElement(tag);
  if (classes.length) node.className = classes.join(' ');
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'on') {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (key === 'value') {
      node.value = value;
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

const $ = (selector, root = document) => root.querySelector(selector);

// ---------------------------------------------------------------------------------------------------------------
// Formatting.

const stateLabel = (state) => String(state).replace(/_/g, ' ');

function badge(state) {
  return el('span.badge.' + (STATES.includes(state) ? state : 'unknown'), { 'data-state': state }, stateLabel(state));
}

function bytes(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return (unit === 0 ? value : value.toFixed(1)) + ' ' + units[unit];
}

function duration(secs) {
  if (typeof secs !== 'number' || !isFinite(secs)) return '?';
  const total = Math.round(secs);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function when(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return isNaN(date) ? String(iso) : date.toLocaleString();
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function percent(fraction) {
  return typeof fraction === 'number' && isFinite(fraction) ? Math.round(fraction * 100) + '%' : '?';
}

// The refused release of a transcode_suspected / corrupt_download reason: its title and its first refused file.
function refusedRelease(reason, verdict) {
  const verification = reason.verification || {};
  const refused = (verification.tracks || []).filter(track => track.file && track.file.verdict === verdict);
  const first = refused[0] ? ` (${refused.length} file${refused.length === 1 ? '' : 's'}; ${refused[0].file.path}: ${refused[0].file.reason})` : '';
  return `"${verification.title || '?'}"${first}`;
}

function approvalReason(reason) {
  if (!reason) return '';
  switch (reason.type) {
    case 'low_confidence': return `Score ${percent(reason.score)} is below the auto-approval threshold ${percent(reason.threshold)}.`;
    case 'track_count_mismatch': return `The release has ${reason.found} of the ${reason.expected} tracks.`;
    case 'duration_mismatch': return `The audio lasts ${duration(reason.found_secs)}; the catalog says ${duration(reason.expected_secs)}.`;
    case 'name_similarity_low': return `The names differ from the catalog's (similarity ${percent(reason.similarity)}).`;
    case 'multiple_good_matches': return `Several releases fit about equally well (${(reason.top_scores || []).map(percent).join(', ')}).`;
    case 'no_exact_match': return 'No release matches exactly.';
    case 'transcode_suspected': return `The downloaded "lossless" release ${refusedRelease(reason, 'suspect')} looks like a lossy transcode; it is blocklisted.`;
    case 'corrupt_download': return `The downloaded release ${refusedRelease(reason, 'corrupt')} is damaged; it is blocklisted.`;
    default: return stateLabel(reason.type || 'unknown reason');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Talking to the service.

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + ui.token, 'X-Actor': ACTOR };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError('The service does not answer (' + err.message + ').', 0);
  }
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401) {
    signOut('The token was refused: sign in again.');
    throw new ApiError('signed out', 401);
  }
  if (!response.ok) {
    throw new ApiError((data && data.error) || `${response.status} ${response.statusText}`, response.status);
  }
  return data;
}

function notify(message, isError) {
  const box = $('#notice');
  box.textContent = message;
  box.classList.toggle('error', Boolean(isError));
  box.setAttribute('role', isError ? 'alert' : 'status');
  box.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.hidden = true; }, isError ? 15000 : 6000);
}

function connectSocket() {
  disconnectSocket();
  if (!ui.token) return;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(`${scheme}//${location.host}/api/v1/ws?token=${encodeURIComponent(ui.token)}`);
  ui.socket = socket;
  socket.addEventListener('open', () => {
    ui.socketRetryMs = 1000;
    setLive(true);
    scheduleRefresh(0); // anything missed while disconnected
  });
  socket.addEventListener('message', (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch (_) { return; }
    onEvent(message);
  });
  socket.addEventListener('close', () => {
    if (ui.socket !== socket) return;
    ui.socket = null;
    setLive(false);
    setTimeout(() => { if (!ui.socket && ui.token) connectSocket(); }, ui.socketRetryMs);
    ui.socketRetryMs = Math.min(ui.socketRetryMs * 2, 15000);
  });
}

function disconnectSocket() {
  const socket = ui.socket;
  ui.socket = null;
  if (socket) socket.close();
}

function setLive(connected) {
  const live = $('#live');
  live.hidden = false;
  live.className = 'live ' + (connected ? 'connected' : 'disconnected');
  live.textContent = connected ? 'live' : 'reconnecting…';
}

function onEvent(message) {
  if (message.type === 'lagged') { scheduleRefresh(0); return; }
  if (message.type === 'progress') { showProgress(message.ticket_id, message.progress_pct); return; }
  if (message.type !== 'state_change') return;
  if (ui.view === 'queue') {
    const row = document.querySelector(`tr[data-ticket-id="${CSS.escape(message.ticket_id)}"]`);
    if (row) replace($('.state-cell', row), badge(message.new_state));
    scheduleRefresh(400);
  } else if (ui.view === 'ticket' && message.ticket_id === ui.ticketId) {
    scheduleRefresh(0);
  }
}

function scheduleRefresh(delayMs) {
  clearTimeout(ui.refreshTimer);
  ui.refreshTimer = setTimeout(() => {
    if (ui.view === 'queue') loadQueue();
    else if (ui.view === 'ticket') loadTicket(ui.ticketId);
  }, delayMs);
}

function showProgress(ticketId, pct) {
  for (const bar of document.querySelectorAll(`progress[data-ticket-id="${CSS.escape(ticketId)}"]`)) {
    bar.value = pct;
    bar.textContent = Math.round(pct) + '%';
    const label = bar.parentElement && $('.pct', bar.parentElement);
    if (label) label.textContent = pct.toFixed(1) + '%';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The catalog webhook: the header says so while its deliveries fail (events wait in the outbox meanwhile).

async function loadWebhookStatus() {
  clearTimeout(ui.webhookTimer);
  ui.webhookTimer = setTimeout(loadWebhookStatus, WEBHOOK_POLL_MS);
  let status;
  try {
    status = await api('GET', '/api/v1/webhook');
  } catch (_) {
    return; // signed out (401), or the service is away: the last line stays until the next look
  }
  renderWebhookStatus(status);
}

function renderWebhookStatus(status) {
  const line = $('#webhook');
  const head = status.head;
  const failing = Boolean(status.enabled && head && head.attempts > 0);
  line.hidden = !failing;
  if (!failing) {
    line.replaceChildren();
    line.removeAttribute('title');
    return;
  }
  const error = head.last_error || 'unknown error';
  replace(line, `webhook: ${status.pending} pending, last error: ${error}`);
  line.title = `${plural(head.attempts, 'failed attempt')} to deliver "${head.event}" of ticket ${head.ticket_id}; `
    + `next try ${when(head.next_attempt_at)}. ${error}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Routing: #/ is the queue, #/ticket/<id> a ticket.

function route() {
  if (!ui.token) { renderSignIn(); return; }
  $('#sign-out').hidden = false;
  if (!ui.socket) connectSocket();
  if (!ui.webhookTimer) loadWebhookStatus();
  const match = location.hash.match(/^#\/ticket\/(.+)$/);
  if (match) {
    ui.view = 'ticket';
    ui.ticketId = decodeURIComponent(match[1]);
    replace($('#main'), el('p.meta', {}, 'Loading…'));
    loadTicket(ui.ticketId);
  } else {
    ui.view = 'queue';
    ui.ticketId = null;
    ui.renderedTicketId = null;
    renderQueueFrame();
    loadQueue();
  }
  $('#main').focus({ preventScroll: true });
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  ui.token = null;
  disconnectSocket();
  $('#live').hidden = true;
  clearTimeout(ui.webhookTimer);
  ui.webhookTimer = null;
  $('#webhook').hidden = true;
  $('#sign-out').hidden = true;
  renderSignIn(message);
}

function renderSignIn(message) {
  ui.view = 'signin';
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'current-password', required: true });
  const error = el('p.notice.error', { role: 'alert', hidden: !message }, message || '');
  const form = el('form.panel.signin', { id: 'signin', on: { submit: async (event) => {
    event.preventDefault();
    ui.token = input.value.trim();
    try {
      await api('GET', '/api/v1/config'); // the admin's route: the catalog's token is refused with 403
      sessionStorage.setItem(TOKEN_KEY, ui.token);
      route();
    } catch (err) {
      if (err.status === 401) return; // signOut() already said so
      ui.token = null;
      error.textContent = err.status === 403
        ? 'This token may not approve tickets: sign in with the admin token.'
        : err.message;
      error.hidden = false;
    }
  } } },
  el('h1', {}, 'Sign in'),
  el('label', { for: 'token' }, 'Admin token', input),
  error,
  el('button', { type: 'submit' }, 'Sign in'),
  el('p.meta', {}, 'The token is kept in this browser tab only.'));
  replace($('#main'), form);
  input.focus();
}

// ---------------------------------------------------------------------------------------------------------------
// The queue.

function renderQueueFrame() {
  const stateSelect = el('select', { id: 'state-filter', on: { change: () => {
    ui.filter.state = stateSelect.value; ui.filter.offset = 0; loadQueue();
  } } }, el('option', { value: '' }, 'all states'), STATES.map((s) => el('option', { value: s }, stateLabel(s))));
  stateSelect.value = ui.filter.state;
  let typing = null;
  const search = el('input', { id: 'text-filter', type: 'search', placeholder: 'artist or album',
    value: ui.filter.q, on: { input: () => {
      clearTimeout(typing);
      typing = setTimeout(() => { ui.filter.q = search.value.trim(); ui.filter.offset = 0; loadQueue(); }, 300);
    } } });
  replace($('#main'),
    el('h1', {}, 'Tickets'),
    el('nav.counts', { id: 'counts', 'aria-label': 'Tickets per state' }),
    el('div.filters', {},
      el('label', {}, 'State', stateSelect),
      el('label', {}, 'Search', search)),
    el('div.scroll', {}, el('table', { id: 'tickets' },
      el('thead', {}, el('tr', {},
        el('th', {}, 'Artist'), el('th', {}, 'Album'), el('th.num.hide-narrow', {}, 'Year'),
        el('th.num.hide-narrow', {}, 'Tracks'), el('th', {}, 'State'), el('th', {}, 'Progress'),
        el('th.hide-narrow', {}, 'Updated'))),
      el('tbody', {}))),
    el('div.pager', { id: 'pager' }),
    el('section.panel', { id: 'blocklist', hidden: true }));
}

// The releases the audio verifier refused: never chosen again until removed here.
async function loadBlocklist() {
  let list;
  try {
    list = await api('GET', '/api/v1/blocklist');
  } catch (err) {
    if (err.status !== 401) notify(err.message, true);
    return;
  }
  const section = $('#blocklist');
  if (ui.view !== 'queue' || !section) return;
  section.hidden = !list.entries.length;
  replace(section, el('h2', {}, 'Blocklisted releases'),
    el('p.meta', {}, 'Refused by the audio verifier; never chosen again for any ticket until removed.'),
    el('div.scroll', {}, el('table', {},
      el('thead', {}, el('tr', {}, el('th', {}, 'Release'), el('th', {}, 'Why'), el('th.hide-narrow', {}, 'Ticket'),
        el('th.hide-narrow', {}, 'Added'), el('th', {}, ''))),
      el('tbody', {}, list.entries.map((entry) => el('tr', { dataset: { infoHash: entry.info_hash } },
        el('td', {}, entry.title, el('br'), el('code.meta', {}, entry.info_hash)),
        el('td', {}, stateLabel(entry.reason), el('br'), el('span.meta', {}, entry.details)),
        el('td.hide-narrow', {}, el('a', { href: '#/ticket/' + encodeURIComponent(entry.ticket_id) }, entry.ticket_id)),
        el('td.hide-narrow.meta', {}, when(entry.added_at)),
        el('td', {}, confirmButton('Remove', 'Really remove?', 'quiet', async () => {
          try {
            await api('DELETE', '/api/v1/blocklist/' + encodeURIComponent(entry.info_hash));
            notify('Removed from the blocklist.');
          } catch (err) {
            if (err.status !== 401) notify(err.message, true);
          }
          loadBlocklist();
        }, { 'data-remove': entry.info_hash }))))))));
}

async function loadQueue() {
  const params = new URLSearchParams({ limit: PAGE_SIZE, offset: ui.filter.offset });
  if (ui.filter.state) params.set('state', ui.filter.state);
  if (ui.filter.q) params.set('q', ui.filter.q);
  let list;
  let stats;
  try {
    [list, stats] = await Promise.all([api('GET', '/api/v1/tickets?' + params), api('GET', '/api/v1/stats')]);
  } catch (err) {
    if (err.status !== 401) notify(err.message, true);
    return;
  }
  if (ui.view !== 'queue') return;
  loadBlocklist();
  renderCounts(stats.counts_by_state || {});
  const body = $('#tickets tbody');
  if (!body) return;
  replace(body, list.tickets.length ? list.tickets.map(ticketRow)
    : el('tr', {}, el('td.empty', { colspan: 7 }, 'No tickets match.')));
  const first = list.total ? ui.filter.offset + 1 : 0;
  const last = ui.filter.offset + list.tickets.length;
  replace($('#pager'),
    el('button.quiet', { type: 'button', disabled: ui.filter.offset === 0, on: { click: () => {
      ui.filter.offset = Math.max(0, ui.filter.offset - PAGE_SIZE); loadQueue();
    } } }, '‹ Previous'),
    el('span.meta', { id: 'page-info' }, `${first}–${last} of ${list.total}`),
    el('button.quiet', { type: 'button', disabled: last >= list.total, on: { click: () => {
      ui.filter.offset += PAGE_SIZE; loadQueue();
    } } }, 'Next ›'));
}

function renderCounts(counts) {
  const nav = $('#counts');
  if (!nav) return;
  const total = Object.values(counts).reduce((sum, n) => sum + n, 0);
  const chip = (state, label, n) => el('button', { type: 'button', 'aria-pressed': ui.filter.state === state ? 'true' : 'false',
    dataset: { state }, on: { click: () => {
      ui.filter.state = state; ui.filter.offset = 0; $('#state-filter').value = state; loadQueue();
    } } }, label, el('span.n', {}, n));
  replace(nav, chip('', 'all', total),
    STATES.filter((s) => counts[s]).map((s) => chip(s, stateLabel(s), counts[s])));
}

function ticketRow(ticket) {
  const href = '#/ticket/' + encodeURIComponent(ticket.ticket_id);
  const progress = typeof ticket.progress_pct === 'number'
    ? el('progress', { max: 100, value: ticket.progress_pct, dataset: { ticketId: ticket.ticket_id } },
      Math.round(ticket.progress_pct) + '%')
    : '';
  return el('tr', { dataset: { ticketId: ticket.ticket_id } },
    el('td', {}, el('a', { href }, ticket.artist)),
    el('td', {}, el('a', { href, tabindex: -1 }, ticket.album)),
    el('td.num.hide-narrow', {}, ticket.year ?? ''),
    el('td.num.hide-narrow', {}, ticket.track_count),
    el('td.state-cell', {}, badge(ticket.state)),
    el('td', {}, progress),
    el('td.hide-narrow.meta', {}, when(ticket.updated_at)));
}

// ---------------------------------------------------------------------------------------------------------------
// One ticket.

async function loadTicket(id) {
  let view;
  try {
    view = await api('GET', '/api/v1/ticket/' + encodeURIComponent(id));
  } catch (err) {
    if (err.status === 401) return;
    if (ui.view === 'ticket' && ui.ticketId === id) {
      replace($('#main'), el('p', {}, el('a', { href: '#/' }, '‹ Tickets')), el('p.notice.error', { role: 'alert' }, err.message));
    }
    return;
  }
  if (ui.view !== 'ticket' || ui.ticketId !== id) return;
  renderTicket(view);
}

// Inputs whose text survives a re-render of the same ticket (a state change must not eat a half-typed reason).
const KEPT_INPUTS = ['reject-reason', 'search-query'];

function renderTicket(view) {
  const ticket = view.ticket;
  const state = view.state;
  const search = ticket.search || {};
  const sameTicket = ui.renderedTicketId === view.ticket_id;
  if (!sameTicket) ui.typed = {};
  for (const id of KEPT_INPUTS) {
    const input = document.getElementById(id);
    if (sameTicket && input) ui.typed[id] = input.value;
  }
  const focused = sameTicket ? document.activeElement?.id : null;
  ui.renderedTicketId = view.ticket_id;
  replace($('#main'),
    el('p', {}, el('a', { href: '#/' }, '‹ Tickets')),
    el('div.summary', {},
      el('h1', { id: 'ticket-title' }, `${search.artist} — ${search.album}`, search.year ? ` (${search.year})` : ''),
      el('span', { id: 'ticket-state' }, badge(state.state))),
    el('p.meta', {}, 'Ticket ', el('code', {}, view.ticket_id), ` · created ${when(view.created_at)}`,
      ` · updated ${when(view.updated_at)}`, view.attempts ? ` · attempt ${view.attempts}` : ''),
    statusPanel(view),
    verificationSection(view),
    actionsPanel(view),
    state.state === 'needs_approval' ? candidatesSection(view) : null,
    requestSection(ticket),
    historySection(view.history || []));
  for (const [id, value] of Object.entries(ui.typed)) {
    const input = document.getElementById(id);
    if (input && value) input.value = value;
  }
  if (focused) document.getElementById(focused)?.focus({ preventScroll: true });
}

function statusPanel(view) {
  const s = view.state;
  const id = view.ticket_id;
  const bar = (value, max, text) => el('div.progress-block', {},
    el('progress', { max, value, dataset: { ticketId: id }, 'aria-label': text }, text), ' ', el('span.pct', {}, text));
  switch (s.state) {
    case 'downloading':
      return el('section.panel', { id: 'status' }, el('h2', {}, 'Downloading'),
        bar(s.progress_pct, 100, s.progress_pct.toFixed(1) + '%'),
        el('p.meta', {}, `${bytes(s.download_speed_bps)}/s`, s.eta_secs != null ? ` · about ${duration(s.eta_secs)} left` : '',
          ' · torrent ', el('code', {}, s.torrent_hash)));
    case 'converting':
      return el('section.panel', { id: 'status' }, el('h2', {}, 'Converting'),
        bar(s.current_track_idx, Math.max(s.total_tracks, 1), `track ${Math.min(s.current_track_idx + 1, s.total_tracks)} of ${s.total_tracks}`),
        el('p.meta', {}, s.current_track_name));
    case 'placing':
      return el('section.panel', { id: 'status' }, el('h2', {}, 'Placing'),
        bar(s.files_placed, Math.max(s.total_files, 1), `${s.files_placed} of ${s.total_files} files`));
    case 'needs_approval':
      return el('section.panel', { id: 'status' }, el('h2', {}, 'Waiting for you'),
        el('p', { id: 'approval-reason' }, approvalReason(s.reason)),
        el('p.meta', {}, `Waiting since ${when(s.waiting_since)}. `,
          s.recommended_idx != null ? `The matcher recommends candidate #${s.recommended_idx + 1}.` : 'No candidate is recommended.'));
    case 'failed':
      return el('section.panel', { id: 'status' }, el('h2', {}, 'Failed'),
        el('p', { id: 'failure' }, s.error),
        el('p.meta', {}, `While ${stateLabel(s.failed_at_state)}; `,
          s.retryable ? 'retrying may succeed.' : 'retrying the same way will not help.'));
    case 'rejected':
      return el('section.panel', { id: 'status' }, el('h2', {}, 'Rejected'),
        el('p', {}, s.reason), el('p.meta', {}, `By ${s.rejected_by}, ${when(s.rejected_at)}`));
    case 'completed': {
      const st = s.stats || {};
      return el('section.panel', { id: 'status' }, el('h2', {}, 'Completed'),
        el('p', {}, `${(st.placed_files || []).length} files placed, ${bytes(st.final_size_bytes)} written; `,
          `${bytes(st.download_bytes)} downloaded in ${duration(st.download_duration_secs)}, converted in ${duration(st.conversion_duration_secs)}.`),
        (st.missing_track_ids || []).length ? el('p.notice.error', {}, 'Missing tracks: ' + st.missing_track_ids.join(', ')) : null);
    }
    default:
      return null;
  }
}

// What the audio verifier found in each release downloaded for the ticket: per file its verdict and evidence.
function verificationSection(view) {
  const releases = view.verifications || [];
  if (!releases.length) return null;
  const db = (value, unit) => typeof value === 'number' ? `${value.toFixed(1)} ${unit}` : '–';
  const khz = (hz) => typeof hz === 'number' ? `${(hz / 1000).toFixed(1)} kHz` : '–';
  const row = (track) => el('tr', { dataset: { verdict: track.file.verdict } },
    el('td', {}, track.file.path),
    el('td', {}, el('span.badge', { dataset: { verdict: track.file.verdict } }, track.file.verdict),
      ` ${percent(track.file.confidence)}`),
    el('td', {}, track.file.reason, track.file.duplicate_of ? ` (same audio as ${track.file.duplicate_of})` : ''),
    el('td.num', {}, khz(track.file.cutoff_hz)),
    el('td.num.hide-narrow', {}, db(track.file.loudness_lufs, 'LUFS')),
    el('td.num.hide-narrow', {}, db(track.file.true_peak_dbtp, 'dBTP')));
  const table = (release, r) => el('div.scroll', {}, el('table', { id: `verification-${r}` },
    el('thead', {}, el('tr', {}, el('th', {}, 'File'), el('th', {}, 'Verdict'), el('th', {}, 'Why'),
      el('th.num', {}, 'Cut-off'), el('th.num.hide-narrow', {}, 'Loudness'), el('th.num.hide-narrow', {}, 'Peak'))),
    el('tbody', {}, release.tracks.map(row))));
  const pictures = (release, r) => release.tracks.map((track, f) => track.spectrogram
    ? el('figure.spectrogram', {}, spectrogramImage(view.ticket_id, r, f, track.file.path),
      el('figcaption.meta', {}, `Spectrogram of ${track.file.path}: ${track.file.reason}`))
    : null);
  return el('section.panel', { id: 'verification' }, el('h2', {}, 'Audio verification'),
    releases.map((release, r) => el('div.release', { dataset: { infoHash: release.info_hash } },
      el('h3', {}, release.title, ' ', el('code.meta', {}, release.info_hash)),
      release.album
        ? el('p.meta', {}, `Album: ${db(release.album.loudness_lufs, 'LUFS')}, peak ${db(release.album.true_peak_dbtp, 'dBTP')}`)
        : null,
      table(release, r),
      pictures(release, r))));
}

// An image behind the admin token: fetched with the Authorization header, shown from a blob URL (kept per ticket so
// re-renders do not fetch it again).
const spectrogramUrls = new Map();
function spectrogramImage(ticketId, release, file, path) {
  const route = `/api/v1/ticket/${encodeURIComponent(ticketId)}/verification/${release}/${file}/spectrogram.png`;
  const img = el('img', { id: `spectrogram-${release}-${file}`, alt: `Spectrogram of ${path}`, width: 1024 });
  const show = (url) => { img.src = url; img.dataset.loaded = 'true'; };
  if (spectrogramUrls.has(route)) {
    show(spectrogramUrls.get(route));
    return img;
  }
  fetch(route, { headers: { Authorization: 'Bearer ' + ui.token } })
    .then((response) => response.ok ? response.blob() : Promise.reject(new Error(response.status + ' ' + response.statusText)))
    .then((blob) => { const url = URL.createObjectURL(blob); spectrogramUrls.set(route, url); show(url); })
    .catch((err) => { img.alt = `Spectrogram unavailable (${err.message})`; });
  return img;
}

// A button that asks for a second press before it acts (approving starts a download; cancelling deletes files).
function confirmButton(label, confirmLabel, className, action, attrs) {
  let armedUntil = 0;
  const button = el('button' + (className ? '.' + className : ''), { type: 'button', ...attrs }, label);
  const disarm = () => { armedUntil = 0; button.textContent = label; button.classList.remove('armed'); };
  button.addEventListener('click', async () => {
    if (Date.now() > armedUntil) {
      armedUntil = Date.now() + 5000;
      button.textContent = confirmLabel;
      button.classList.add('armed');
      setTimeout(() => { if (Date.now() > armedUntil) disarm(); }, 5100);
      return;
    }
    disarm();
    button.disabled = true;
    try { await action(); } finally { button.disabled = false; }
  });
  button.addEventListener('blur', disarm);
  return button;
}

async function command(path, body, done) {
  try {
    await api('POST', path, body);
    notify(done);
    scheduleRefresh(0);
  } catch (err) {
    if (err.status !== 401) notify(err.message, true);
  }
}

function actionsPanel(view) {
  const state = view.state.state;
  if (FINISHED.has(state)) return null;
  const base = '/api/v1/ticket/' + encodeURIComponent(view.ticket_id);
  const parts = [];
  if (state === 'needs_approval') {
    const reason = el('input', { id: 'reject-reason', type: 'text', maxlength: 1000, placeholder: 'why none fits' });
    parts.push(el('form', { id: 'reject-form', on: { submit: (event) => {
      event.preventDefault();
      command(base + '/reject', { reason: reason.value.trim() || undefined }, 'Rejected.');
    } } }, el('label', {}, 'Reason', reason), el('button.danger', { type: 'submit', id: 'reject' }, 'Reject all')));
  }
  if (['needs_approval', 'failed', 'pending'].includes(state)) {
    const query = el('input', { id: 'search-query', type: 'text', maxlength: 1000, placeholder: 'default: from the ticket' });
    parts.push(el('form', { id: 'search-form', on: { submit: (event) => {
      event.preventDefault();
      command(base + '/force-search', { query: query.value.trim() || undefined }, 'Searching again.');
    } } }, el('label', {}, 'Search query', query), el('button', { type: 'submit', id: 'force-search' }, 'Search again')));
  }
  if (state === 'failed') {
    parts.push(el('button', { type: 'button', id: 'retry', on: { click: () => command(base + '/retry', undefined, 'Retrying.') } }, 'Retry'));
  }
  parts.push(confirmButton('Cancel ticket', 'Press again to cancel', 'quiet', () => {
    return api('DELETE', base).then(() => { notify('Cancelled.'); scheduleRefresh(0); },
      (err) => { if (err.status !== 401) notify(err.message, true); });
  }, { id: 'cancel' }));
  return el('section', { id: 'actions' }, el('h2', {}, 'Actions'), el('div.actions', {}, parts));
}

function candidatesSection(view) {
  const s = view.state;
  const reviews = view.review || [];
  const base = '/api/v1/ticket/' + encodeURIComponent(view.ticket_id);
  const cards = (s.candidates || []).map((scored, idx) => {
    const c = scored.candidate || {};
    const review = reviews[idx] || {};
    const recommended = s.recommended_idx === idx;
    const approve = confirmButton(`Approve #${idx + 1}`, `Press again to download #${idx + 1}`, recommended ? '' : 'quiet',
      () => command(base + '/approve', { candidate_idx: idx }, `Approved candidate #${idx + 1}.`),
      { 'data-approve': idx, 'aria-label': `Approve candidate ${idx + 1}: ${c.title}` });
    return el('article.candidate' + (recommended ? '.recommended' : ''), { dataset: { idx }, 'aria-label': `Candidate ${idx + 1}` },
      el('div.summary', {}, el('strong', {}, `#${idx + 1}`), recommended ? el('span.badge.completed', {}, 'recommended') : null,
        el('span.score', {}, `score ${percent(scored.score)}`)),
      el('h3.candidate-title', {}, c.title),
      el('dl', {},
        el('dt', {}, 'Indexer'), el('dd', {}, c.indexer || '?'),
        el('dt', {}, 'Size'), el('dd', {}, bytes(c.size_bytes)),
        el('dt', {}, 'Seeders'), el('dd', {}, `${c.seeders} (${c.leechers} leechers)`),
        el('dt', {}, 'Quality'), el('dd', {}, review.quality || '?'),
        el('dt', {}, 'Files'), el('dd', {}, review.audio_files == null ? 'file list unknown' : `${review.audio_files} audio`
          + ((review.unmapped_audio_files || []).length ? `, ${review.unmapped_audio_files.length} not mapped` : '')
          + (c.files_omitted ? `, ${c.files_omitted} more not listed` : ''))),
      (scored.hard_rejects || []).length
        ? el('ul.rejects', { 'aria-label': 'Never auto-approved because' }, scored.hard_rejects.map((r) => el('li', {}, typeof r === 'string' ? r : r.message))) : null,
      el('p.reasoning', {}, scored.reasoning),
      approve,
      mappingTable(review));
  });
  return el('section', { id: 'candidates-section' },
    el('h2', {}, `Candidates (${cards.length})`),
    el('div.candidates', { id: 'candidates' }, cards));
}

function mappingTable(review) {
  const rows = (review.tracks || []).map((t) => {
    const estimated = t.estimated_secs == null ? '—' : duration(t.estimated_secs);
    return el('tr.' + t.duration, { dataset: { track: t.catalog_track_id } },
      el('td.num', {}, t.disc_number > 1 ? `${t.disc_number}-${t.track_number}` : t.track_number),
      el('td', {}, t.name),
      el('td.num', {}, duration(t.expected_secs)),
      // The file name only (the folder is usually the release title); the whole path on hover.
      t.file == null
        ? el('td.path', {}, el('span.flag', {}, 'no file'))
        : el('td.path', { title: t.file }, t.file.split('/').pop()),
      t.duration === 'disagrees'
        ? el('td.num', { title: `the file size says ${estimated}, the catalog ${duration(t.expected_secs)}` },
          estimated, ' ', el('span.flag', { 'aria-label': 'duration differs' }, '≠'))
        : el('td.num', {}, estimated));
  });
  return el('div.mapping-block', {},
    el('p.meta', {}, review.unmapped || review.disagreeing
      ? `${plural(review.unmapped || 0, 'track')} without a file, ${plural(review.disagreeing || 0, 'track')} with another duration`
      : 'Every track has a file'),
    el('div.scroll', {}, el('table.mapping', {},
      el('thead', {}, el('tr', {}, el('th.num', {}, '#'), el('th', {}, 'Track'), el('th.num', {}, 'Expected'),
        el('th', {}, 'File'), el('th.num', { title: 'estimated from the file size' }, 'Est.'))),
      el('tbody', {}, rows))));
}

function requestSection(ticket) {
  const c = ticket.constraints || {};
  return el('section', { id: 'request' }, el('h2', {}, 'Request'),
    el('p.meta', {}, `Output ${c.format || '?'}`, c.sample_rate_hz ? `, ${c.sample_rate_hz} Hz` : '',
      c.bitrate_kbps ? `, ${c.bitrate_kbps} kbps` : ''),
    el('div.scroll', {}, el('table', { id: 'request-tracks' },
      el('thead', {}, el('tr', {}, el('th.num', {}, '#'), el('th', {}, 'Track'), el('th.num', {}, 'Duration'), el('th', {}, 'Destination'))),
      el('tbody', {}, (ticket.tracks || []).map((t) => el('tr', {},
        el('td.num', {}, `${t.disc_number}-${t.track_number}`), el('td', {}, t.name),
        el('td.num', {}, duration(t.duration_secs)), el('td.path.mono', {}, t.dest_path)))))),
    (ticket.images || []).length ? el('ul', {}, ticket.images.map((i) => el('li', {}, `${i.type}: `, el('span.mono', {}, i.dest_path)))) : null);
}

function historySection(history) {
  const items = history.slice().reverse().map((event) => {
    const d = event.details || {};
    const detail = [];
    if (d.actor) detail.push('by ' + d.actor);
    if (d.retry) detail.push(`retry ${d.retry.attempt} at ${when(d.retry.retry_at)}: ${d.retry.error}`);
    if (d.resumed) detail.push(`resumed (attempt ${d.resumed.attempt})`);
    if (d.reason && typeof d.reason === 'string') detail.push(d.reason);
    if (d.reason && d.reason.type) detail.push(approvalReason(d.reason));
    if (d.error) detail.push(d.error);
    if (d.query) detail.push('query: ' + d.query);
    if (d.selected && d.selected.candidate) detail.push('release: ' + d.selected.candidate.title);
    if (d.llm) {
      const llm = d.llm;
      detail.push(`LLM ${llm.provider}/${llm.model}${llm.cached ? ' (cached)' : ''}: `
        + (llm.fallback ? 'not used: ' + llm.fallback : (llm.changes || []).join('; ') || 'agreed'));
    }
    const move = event.from_state && event.from_state !== event.to_state
      ? [badge(event.from_state), ' → ', badge(event.to_state)] : [badge(event.to_state)];
    return el('li', { dataset: { toState: event.to_state } }, el('span.meta', {}, when(event.at)), ' ', move,
      detail.length ? el('div.detail', {}, detail.join(' · ')) : null);
  });
  return el('section', { id: 'history' }, el('h2', {}, 'History'), el('ol.timeline', {}, items));
}

// ---------------------------------------------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('#sign-out').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', (event) => {
    // "/" jumps to the search box, as on most sites.
    if (event.key === '/' && ui.view === 'queue' && document.activeElement?.tagName !== 'INPUT') {
      event.preventDefault();
      $('#text-filter')?.focus();
    }
  });
  route();
});
