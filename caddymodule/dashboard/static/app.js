// podcell's dashboard. It reads the admin API of the origin that served it,
// with relative URLs, so it needs no configuration and the admin API's own
// checks apply to every request it makes.

const API = '/podcell';
const POLL_MS = 1500;
const HISTORY = 120; // samples per service for the charts: 3 minutes
const MAX_LOG_LINES = 500;

// The states in the order a service's instances go through them; a standby
// container last, as it is not running.
const STATES = ['starting', 'ready', 'resuming', 'pausing', 'paused', 'draining', 'stopping', 'standby'];
// The states of instances that are up to serve, as the scaler counts them. A
// standby container is created but not started: a service with one is at zero.
const UP = ['starting', 'ready', 'resuming', 'pausing', 'paused'];

const upCount = (states) => UP.reduce((n, s) => n + (states[s] || 0), 0);

const state = {
	selected: '',      // the service shown below the table
	history: new Map(), // service -> [{t, requests, errors, coldStarts, coldSum, coldCount}]
	logs: null,        // AbortController of the followed log
	build: null,       // {id, ctl, picked}: the build whose log is shown
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
	const e = document.createElement(tag);
	for (const [k, v] of Object.entries(attrs || {})) {
		e.setAttribute(k, v);
	}
	for (const c of children) {
		e.append(c instanceof Node ? c : String(c));
	}
	return e;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function clock(t) {
	return new Date(t).toLocaleTimeString([], {hour12: false});
}

// errorOf reads the admin API's {"error": "..."} answer.
async function errorOf(res) {
	let msg = res.statusText;
	try {
		msg = (await res.json()).error || msg;
	} catch (_) {
		// not JSON: keep the status text
	}
	return `${res.url.replace(location.origin, '')}: ${res.status} ${msg}`;
}

async function get(path) {
	const res = await fetch(API + path, {cache: 'no-store'});
	if (!res.ok) {
		throw new Error(await errorOf(res));
	}
	return res;
}

// streamLines calls onLine for each line of a streamed answer until it ends.
async function streamLines(url, signal, onLine) {
	const res = await fetch(url, {signal, cache: 'no-store'});
	if (!res.ok) {
		throw new Error(await errorOf(res));
	}
	const reader = res.body.getReader();
	const decoder = new TextDecoder();
	let buf = '';
	for (;;) {
		const {value, done} = await reader.read();
		if (done) {
			break;
		}
		buf += decoder.decode(value, {stream: true});
		let i;
		while ((i = buf.indexOf('\n')) >= 0) {
			onLine(buf.slice(0, i));
			buf = buf.slice(i + 1);
		}
	}
	if (buf !== '') {
		onLine(buf);
	}
}

// parseMetrics sums the series the charts need, per service, from
// Prometheus' text format.
function parseMetrics(text) {
	const out = new Map();
	for (const line of text.split('\n')) {
		if (line === '' || line.startsWith('#')) {
			continue;
		}
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
		if (!m) {
			continue;
		}
		const labels = {};
		for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
			labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
		}
		if (labels.service === undefined) {
			continue;
		}
		if (!out.has(labels.service)) {
			out.set(labels.service, {requests: 0, errors: 0, coldStarts: 0, coldSum: 0, coldCount: 0});
		}
		const s = out.get(labels.service);
		const v = Number(m[3]);
		switch (m[1]) {
		case 'podcell_requests_total':
			s.requests += v;
			if (labels.code_class === '5xx') {
				s.errors += v;
			}
			break;
		case 'podcell_cold_starts_total':
			s.coldStarts += v;
			break;
		case 'podcell_cold_start_duration_seconds_sum':
			s.coldSum += v;
			break;
		case 'podcell_cold_start_duration_seconds_count':
			s.coldCount += v;
			break;
		}
	}
	return out;
}

function record(t, metrics) {
	for (const [name, m] of metrics) {
		if (!state.history.has(name)) {
			state.history.set(name, []);
		}
		const h = state.history.get(name);
		h.push({t, ...m});
		if (h.length > HISTORY + 1) {
			h.shift();
		}
	}
}

// deltas turns a counter's samples into increases per interval; a counter
// that went back (Caddy restarted) counts from zero.
function deltas(h, key, perSecond) {
	const out = [];
	for (let i = 1; i < h.length; i++) {
		let d = h[i][key] - h[i - 1][key];
		if (d < 0) {
			d = h[i][key];
		}
		out.push(perSecond ? d / Math.max(h[i].t - h[i - 1].t, 0.001) : d);
	}
	return out;
}

function niceCeil(v) {
	const p = Math.pow(10, Math.floor(Math.log10(v)));
	for (const f of [1, 2, 5, 10]) {
		if (f * p >= v) {
			return f * p;
		}
	}
	return 10 * p;
}

// drawChart draws the last HISTORY values, the newest on the right, as bars
// or a filled line, and notes their maximum and total on the canvas for
// anyone reading the page without eyes.
function drawChart(canvas, values, color, bars) {
	const max = values.reduce((a, b) => Math.max(a, b), 0);
	const total = values.reduce((a, b) => a + b, 0);
	canvas.dataset.max = String(max);
	canvas.dataset.total = String(total);

	const dpr = window.devicePixelRatio || 1;
	const w = canvas.clientWidth;
	const h = canvas.clientHeight;
	canvas.width = Math.round(w * dpr);
	canvas.height = Math.round(h * dpr);
	const g = canvas.getContext('2d');
	g.scale(dpr, dpr);
	g.clearRect(0, 0, w, h);

	const left = 34;
	const right = w - 4;
	const top = 6;
	const bottom = h - 16;
	const ceil = niceCeil(Math.max(max, 1));
	const y = (v) => bottom - (v / ceil) * (bottom - top);
	const slot = (right - left) / HISTORY;
	const x = (i) => right - (values.length - i) * slot;

	g.font = '10px system-ui, sans-serif';
	g.fillStyle = '#6b7280';
	g.strokeStyle = '#e3e6eb';
	g.lineWidth = 1;
	g.textAlign = 'right';
	g.textBaseline = 'middle';
	// Counts (the bars) get whole ticks only.
	for (const v of [0, ceil / 2, ceil].filter((v) => !bars || Number.isInteger(v))) {
		g.beginPath();
		g.moveTo(left, Math.round(y(v)) + 0.5);
		g.lineTo(right, Math.round(y(v)) + 0.5);
		g.stroke();
		g.fillText(String(+v.toPrecision(3)), left - 4, y(v));
	}
	g.textBaseline = 'alphabetic';
	g.textAlign = 'left';
	g.fillText(`${Math.round(HISTORY * POLL_MS / 60000)} min ago`, left, h - 3);
	g.textAlign = 'right';
	g.fillText('now', right, h - 3);

	g.fillStyle = color;
	g.strokeStyle = color;
	if (bars) {
		values.forEach((v, i) => {
			if (v > 0) {
				g.fillRect(x(i) + 0.5, y(v), Math.max(slot - 1, 1), bottom - y(v));
			}
		});
		return;
	}
	if (values.length < 2) {
		return;
	}
	g.beginPath();
	values.forEach((v, i) => (i === 0 ? g.moveTo(x(i) + slot, y(v)) : g.lineTo(x(i) + slot, y(v))));
	g.lineWidth = 1.5;
	g.stroke();
	g.lineTo(right, bottom);
	g.lineTo(x(0) + slot, bottom);
	g.closePath();
	g.globalAlpha = 0.12;
	g.fill();
	g.globalAlpha = 1;
}

function badges(states) {
	const span = el('span');
	if (upCount(states) === 0) {
		span.append(el('span', {class: 'badge idle'}, 'scaled to zero'));
	}
	const names = STATES.concat(Object.keys(states).filter((s) => !STATES.includes(s)));
	for (const s of names) {
		if (states[s]) {
			span.append(el('span', {class: `badge ${s}`}, `${states[s]} ${s}`));
		}
	}
	return span;
}

function renderServices(services, metrics) {
	const body = $('services').tBodies[0];
	body.replaceChildren();
	$('no-services').hidden = services.length > 0;
	for (const svc of services) {
		const m = metrics.get(svc.name) || {coldStarts: svc.stats.cold_starts || 0, errors: 0};
		const h = state.history.get(svc.name) || [];
		const rps = deltas(h.slice(-2), 'requests', true);
		const row = el('tr', {
			'data-service': svc.name,
			'data-ready': String(svc.states.ready || 0),
			'data-up': String(upCount(svc.states)),
			'data-cold-starts': String(m.coldStarts),
			'data-requests': String(m.requests || 0),
			'data-errors': String(m.errors),
		},
		el('td', {}, el('strong', {}, svc.name)),
		el('td', {}, badges(svc.states)),
		el('td', {class: 'num'}, svc.inflight),
		el('td', {class: 'num'}, svc.queued),
		el('td', {class: 'num'}, rps.length ? rps[0].toFixed(1) : '–'),
		el('td', {class: 'num'}, m.coldStarts),
		el('td', {class: 'num'}, m.errors),
		el('td', {class: 'muted'}, (svc.revision || '').slice(0, 12)));
		if (svc.name === state.selected) {
			row.classList.add('selected');
		}
		row.addEventListener('click', () => select(svc.name));
		body.append(row);
	}
}

function renderDetail(svc, metrics) {
	$('detail').hidden = !svc;
	if (!svc) {
		return;
	}
	$('detail-name').textContent = svc.name;
	// A git service's image is a build's id: its source says more.
	const src = svc.deploy && svc.deploy.source;
	$('detail-image').textContent = src ? `${src.url} ${src.ref || ''} ${src.root || ''}` : svc.image;

	const h = state.history.get(svc.name) || [];
	const rps = deltas(h, 'requests', true);
	drawChart($('chart-rps'), rps, '#2f6fde', false);
	$('rps-now').textContent = rps.length ? `${rps[rps.length - 1].toFixed(1)}/s` : '';
	drawChart($('chart-cold'), deltas(h, 'coldStarts', false), '#d9730d', true);
	const m = metrics.get(svc.name);
	$('cold-count').textContent = String(m ? m.coldStarts : svc.stats.cold_starts || 0);
	$('cold-mean').textContent = m && m.coldCount > 0 ? `mean ${(m.coldSum / m.coldCount).toFixed(2)} s to ready` : '';

	const body = $('instances').tBodies[0];
	body.replaceChildren();
	$('no-instances').hidden = upCount(svc.states) > 0;
	for (const i of svc.instances) {
		body.append(el('tr', {'data-state': i.state},
			el('td', {title: i.name}, (i.id || i.name || '').slice(0, 12)),
			el('td', {}, el('span', {class: `badge ${i.state}`}, i.state)),
			el('td', {class: 'num'}, i.inflight),
			el('td', {title: (i.net && i.net.shaping) || ''}, netLabel(i)),
			el('td', {class: 'muted'}, (i.revision || '').slice(0, 12))));
	}
	renderBuilds(svc);
}

// netLabel is an instance's network and rate, e.g. "podcell-hello, 28.9 Mbit/s";
// the cell's title says where the rate is set.
function netLabel(i) {
	const n = i.net || {};
	const parts = [n.network || (i.addr ? 'own namespace' : '')];
	if (n.rate_mbit) parts.push(`${n.rate_mbit.toFixed(1)} Mbit/s`);
	return parts.filter(Boolean).join(', ');
}

function renderErrors(events) {
	const list = $('errors');
	list.replaceChildren();
	$('no-errors').hidden = events.length > 0;
	for (const ev of events.slice(0, 20)) {
		let what = ev.message;
		if (ev.status) {
			what = `${ev.status} ${what}`;
		}
		if (ev.exit_code !== undefined && !what.includes(`code ${ev.exit_code}`)) {
			what += ` (exit code ${ev.exit_code})`;
		}
		const li = el('li', {'data-kind': ev.kind},
			el('span', {class: 'when'}, clock(ev.time)),
			el('span', {class: `badge ${ev.kind === 'http_5xx' ? 'draining' : 'failed'}`}, ev.kind),
			' ', what);
		if (ev.logs && ev.logs.length) {
			li.append(el('details', {}, el('summary', {class: 'muted'}, 'last output'), el('pre', {class: 'log'}, ev.logs.join('\n'))));
		}
		list.append(li);
	}
}

function renderBuilds(svc) {
	const card = $('builds-card');
	card.hidden = !svc.deploy;
	if (!svc.deploy) {
		return;
	}
	const builds = svc.deploy.builds; // newest first
	const body = $('builds').tBodies[0];
	body.replaceChildren();
	for (const b of builds) {
		const row = el('tr', {'data-build': String(b.id)},
			el('td', {class: 'num'}, `#${b.id}`),
			el('td', {}, el('span', {class: `badge ${b.status}`}, b.status)),
			el('td', {}, b.trigger),
			el('td', {class: 'muted'}, (b.commit || '').slice(0, 10)),
			el('td', {class: 'muted'}, clock(b.started)),
			el('td', {class: 'num'}, b.seconds ? b.seconds.toFixed(1) : ''),
			el('td', {}, b.reason || ''));
		if (state.build && state.build.id === b.id) {
			row.classList.add('selected');
		}
		row.addEventListener('click', () => showBuild(svc.name, b.id, true));
		body.append(row);
	}
	// Until one is picked, show the newest build's log.
	const picked = state.build && state.build.picked;
	if (!picked && builds.length && (!state.build || state.build.id !== builds[0].id)) {
		showBuild(svc.name, builds[0].id, false);
	}
}

function showBuild(name, id, picked) {
	if (state.build) {
		state.build.ctl.abort();
	}
	const ctl = new AbortController();
	state.build = {id, ctl, picked};
	$('build-log-id').textContent = `#${id}`;
	const pre = $('build-log');
	pre.replaceChildren();
	const url = `${API}/services/${encodeURIComponent(name)}/builds/${id}/log?follow=1`;
	streamLines(url, ctl.signal, (line) => appendLine(pre, el('span', {}, line)))
		.catch((err) => {
			if (!ctl.signal.aborted) {
				appendLine(pre, el('span', {class: 'note'}, `log: ${err.message}`));
			}
		});
}

// appendLine adds a line to a log view, dropping the oldest past the limit
// and following the end unless the reader scrolled up.
function appendLine(pre, span) {
	const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
	pre.append(span, '\n');
	while (pre.childNodes.length > 2 * MAX_LOG_LINES) {
		pre.firstChild.remove();
		pre.firstChild.remove();
	}
	if (atEnd) {
		pre.scrollTop = pre.scrollHeight;
	}
}

function logLine(l) {
	const span = el('span', {class: l.stream === 'stderr' ? 'stderr' : ''});
	if (l.dropped) {
		span.append(el('span', {class: 'note'}, `[${l.dropped} lines dropped] `));
	}
	span.append(el('span', {class: 'meta'}, `${clock(l.time)} ${(l.instance || '').slice(0, 12)} `), l.text);
	return span;
}

// followLogs streams the service's output until another service is picked,
// and follows again when the stream ends (a reload, a restart).
async function followLogs(name) {
	if (state.logs) {
		state.logs.abort();
	}
	const ctl = new AbortController();
	state.logs = ctl;
	const pre = $('log');
	const url = `${API}/services/${encodeURIComponent(name)}/logs?tail=100&follow=1`;
	while (!ctl.signal.aborted) {
		pre.replaceChildren();
		$('log-state').textContent = 'following';
		try {
			await streamLines(url, ctl.signal, (line) => {
				try {
					appendLine(pre, logLine(JSON.parse(line)));
				} catch (_) {
					appendLine(pre, el('span', {}, line));
				}
			});
		} catch (err) {
			if (ctl.signal.aborted) {
				return;
			}
			$('log-state').textContent = `disconnected: ${err.message}`;
		}
		await sleep(2000);
	}
}

function select(name) {
	if (name === state.selected) {
		return;
	}
	state.selected = name;
	if (state.build) {
		state.build.ctl.abort();
		state.build = null;
	}
	for (const row of $('services').tBodies[0].rows) {
		row.classList.toggle('selected', row.dataset.service === name);
	}
	if (name) {
		followLogs(name);
	}
}

function setStatus(ok, text) {
	const s = $('status');
	s.dataset.ok = ok ? '1' : '0';
	s.textContent = text;
}

async function poll() {
	try {
		const [servicesRes, metricsRes] = await Promise.all([get('/services'), get('/metrics')]);
		const services = await servicesRes.json();
		const metrics = parseMetrics(await metricsRes.text());
		record(Date.now() / 1000, metrics);
		if (!services.some((s) => s.name === state.selected)) {
			select(services.length ? services[0].name : '');
		}
		renderServices(services, metrics);
		const svc = services.find((s) => s.name === state.selected);
		renderDetail(svc, metrics);
		if (svc) {
			const events = await (await get(`/events?service=${encodeURIComponent(svc.name)}`)).json();
			renderErrors(events);
		}
		setStatus(true, `live · ${services.length} service${services.length === 1 ? '' : 's'} · updated ${clock(Date.now())}`);
	} catch (err) {
		setStatus(false, `cannot read the admin API: ${err.message}`);
	}
	setTimeout(poll, POLL_MS);
}

poll();
