"""The staff status page (FastAPI + uvicorn, in a thread of the supervisor's process).

Read-only without a token: `GET /` (the page), `GET /api/status` (JSON: show, scene cue, mode, fps,
per-stage times, uptime, restarts, camera and OSC state, attract mode, the last errors with their
tracebacks) and `GET /thumbnail.jpg` (the presented frame, a few seconds old, as the engine wrote it).
The controls need the site's token, sent
as `Authorization: Bearer TOKEN` (or `X-Kiosk-Token: TOKEN`), and answer 401 without it, changing
nothing: `POST /api/restart`, `POST /api/next`, `POST /api/cue` with `{"show": "default.toml"}` (a show
of the playlist, by file name, path or index), `POST /api/learn` with `{"on": true}` (MIDI learn in the running
engine, over its OSC port), `GET /api/log?lines=N` (the page shows the last 50 once the token is typed). With
no token configured the controls are off. Commands are queued for the supervisor's loop, which applies them on
its next turn.

Hostile clients (installation/kiosk/web.py): the token is checked before a body is read (every POST and
`/api/log`), a body is at most `MAX_BODY` bytes (413 on its Content-Length, or as it streams), headers
must arrive within 10 s, and connections that never finish their headers cannot keep anyone out.
"""

from __future__ import annotations

import hmac
import logging
import threading

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from installation.kiosk import web

log = logging.getLogger("kiosk.status")

MAX_BODY = 16 * 1024  # bytes: a command's body is a show's name


def refusal(token: str | None, headers, method: str, path: str, client) -> tuple[int, str, dict] | None:
    """None when the request carries the staff token, else (401, why, headers); logged."""
    headers = {k.lower(): v for k, v in headers}
    given = headers.get("x-kiosk-token", "")
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if token is not None and given and hmac.compare_digest(given.encode(), token.encode()):
        return None
    log.warning("refused %s %s from %s: %s", method, path, client[0] if client else "?",
                "no token configured" if token is None else "wrong token" if given else "no token")
    return 401, "a staff token is needed" if token else "controls are off: no token configured", \
        {"WWW-Authenticate": "Bearer"}


def guarded(supervisor, app):
    """The app behind web.Guard: the controls' token is checked before their body is read."""
    def refuse(scope):
        if scope["method"] != "POST" and scope["path"] != "/api/log":
            return None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        return refusal(supervisor.site.status.token, headers, scope["method"], scope["path"], scope.get("client"))
    return web.Guard(app, MAX_BODY, refuse)


def create_app(supervisor) -> FastAPI:
    app = FastAPI(title="Masquerade kiosk", docs_url=None, redoc_url=None, openapi_url=None)

    def authorise(request: Request) -> None:  # the guard has checked already: this is a second lock
        why = refusal(supervisor.site.status.token, request.headers.items(), request.method, request.url.path,
                      (request.client.host,) if request.client else None)
        if why is not None:
            raise HTTPException(why[0], why[1], headers=why[2])

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/api/status")
    def status() -> dict:
        return supervisor.snapshot()

    @app.get("/thumbnail.jpg")
    def thumbnail() -> Response:
        try:
            data = supervisor.heartbeat_path.with_suffix(".jpg").read_bytes()
        except OSError:
            raise HTTPException(404, "no thumbnail yet") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/log")
    def recent_log(request: Request, lines: int = 100) -> dict:
        authorise(request)
        recent = list(supervisor.recent.lines) if supervisor.recent is not None else []
        return {"lines": recent[-max(1, min(lines, 500)):]}

    @app.post("/api/restart", status_code=202)
    def restart(request: Request) -> dict:
        authorise(request)
        supervisor.commands.put(("restart", None))
        return {"accepted": "restart"}

    @app.post("/api/next", status_code=202)
    def next_show(request: Request) -> dict:
        authorise(request)
        supervisor.commands.put(("next", None))
        return {"accepted": "next"}

    @app.post("/api/learn", status_code=202)
    def learn(request: Request, body: dict = Body(...)) -> dict:  # noqa: B008 - FastAPI's own idiom
        """MIDI learn on (`{"on": true}`) or off in the running engine: `/masq/learn/start|stop` to its OSC port."""
        authorise(request)
        on = body.get("on")
        if not isinstance(on, bool):
            raise HTTPException(422, 'expected {"on": true} or {"on": false}')
        port = supervisor.engine_osc_port()
        if port is None:
            raise HTTPException(409, "no engine with OSC is running")
        from pythonosc.udp_client import SimpleUDPClient

        try:
            SimpleUDPClient("127.0.0.1", int(port)).send_message("/masq/learn/" + ("start" if on else "stop"), 1)
        except OSError as e:
            raise HTTPException(503, f"OSC not sent: {e}") from None
        return {"accepted": "learn " + ("on" if on else "off")}

    @app.post("/api/cue", status_code=202)
    def cue(request: Request, body: dict = Body(...)) -> dict:  # noqa: B008 - FastAPI's own idiom
        authorise(request)
        index = supervisor.find_entry(str(body.get("show", "")))
        if index is None:
            raise HTTPException(404, f"no show {body.get('show')!r} in the playlist")
        supervisor.commands.put(("cue", index))
        return {"accepted": "cue", "index": index}

    return app


def serve(supervisor, host: str, port: int) -> uvicorn.Server:
    """Start the page in a daemon thread; set `.should_exit` on the result to stop it. Bounded: at most
    128 connections at once, 16 from one address (installation/kiosk/web.py), small bodies, and no access
    log, so a flood of requests cannot starve the supervisor or fill the disk."""
    config = uvicorn.Config(guarded(supervisor, create_app(supervisor)), host=host, port=port,
                            **web.config_kwargs(per_address=16, connections=128))
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn exits when the port is taken: the kiosk goes on without its page
            log.error("the status page could not start on %s:%d", host, port)

    threading.Thread(target=run, name="status-page", daemon=True).start()
    log.info("status page on http://%s:%d/", host, port)
    return server


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Masquerade kiosk</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em; background: #111; color: #ddd; }
h1 { font-size: 1.3em; } table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: left; }
pre { background: #222; padding: .5em; white-space: pre-wrap; max-height: 20em; overflow: auto; }
button, input, select { font: inherit; margin: 2px; } .ok { color: #7c7; } .bad { color: #e77; }
#controls { border: 1px solid #444; padding: .5em 1em; margin: 1em 0; }
#thumb { float: right; max-width: 40vw; border: 1px solid #444; background: #000; min-width: 160px; min-height: 90px; }
</style></head>
<body>
<h1>Masquerade kiosk: <span id="site">…</span></h1>
<img id="thumb" alt="the presented frame">
<table>
<tr><th>mode</th><td id="mode">…</td></tr>
<tr><th>show</th><td id="show"></td></tr>
<tr><th>scene</th><td id="scene"></td></tr>
<tr><th>scene cue</th><td id="cue"></td></tr>
<tr><th>frames per second</th><td id="fps"></td></tr>
<tr><th>show time</th><td id="showtime"></td></tr>
<tr><th>stage times (ms/frame)</th><td id="stages"></td></tr>
<tr><th>uptime</th><td id="uptime"></td></tr>
<tr><th>engine restarts</th><td id="restarts"></td></tr>
<tr><th>show switches</th><td id="switches"></td></tr>
<tr><th>opening hours</th><td id="hours"></td></tr>
<tr><th>camera</th><td id="camera"></td></tr>
<tr><th>OSC</th><td id="osc"></td></tr>
<tr><th>attract mode</th><td id="attract"></td></tr>
<tr><th>MIDI learn</th><td id="learn"></td></tr>
<tr><th>memory</th><td id="memory"></td></tr>
<tr><th>disk</th><td id="disk"></td></tr>
</table>
<div id="controls">
<label>Staff token <input id="token" type="password" autocomplete="off"></label><br>
<button id="restart">Restart engine</button>
<button id="next">Next show</button>
<select id="cue-show"></select><button id="cue">Play</button>
<button id="learn-on">MIDI learn on</button><button id="learn-off">MIDI learn off</button>
<div id="message"></div>
</div>
<h2>Last errors</h2><div id="errors"></div>
<h2>Events</h2><pre id="events"></pre>
<h2>Log (the last 50 lines, with the staff token)</h2><pre id="log"></pre>
<script>
const $ = (id) => document.getElementById(id);
const when = (t) => new Date(t * 1000).toLocaleString();
function duration(s) { s = Math.floor(s); const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
  return `${h} h ${m} min ${s % 60} s`; }
let cueFilled = false;
async function refresh() {
  let st;
  try { st = await (await fetch('/api/status')).json(); } catch (e) { $('mode').textContent = 'no answer'; return; }
  const hb = st.heartbeat || {};
  $('site').textContent = st.site;
  $('mode').textContent = st.mode + (st.safe_mode ? ' (safe show after failures)' : '');
  $('mode').className = st.mode === 'playing' ? 'ok' : 'bad';
  $('show').textContent = (hb.show || '') + '  ' + (st.show || '');
  $('fps').textContent = hb.fps !== undefined ? hb.fps.toFixed(1) : '';
  $('showtime').textContent = hb.t !== undefined ? hb.t.toFixed(1) + ' s' : '';
  $('stages').textContent = Object.entries(hb.stage_ms || {}).map(([k, v]) => `${k} ${v.toFixed(1)}`).join('  ');
  $('uptime').textContent = duration(st.uptime);
  $('restarts').textContent = st.restarts;  // crashes, hangs, refusals and staff restarts only
  const ls = st.last_switch, file = (p) => (p || '').split('/').pop();
  $('switches').textContent = `${st.switches ?? 0}` + (st.switching ? `, switching to ${file(st.switching)}` : '') +
    (!ls ? '' : `; last: ${file(ls.show)} ${ls.state}` + (ls.seconds != null ? ` in ${ls.seconds.toFixed(1)} s, ` +
      `longest frame gap ${ls.longest_gap_ms.toFixed(0)} ms (${ls.frames} frames)` : '') +
      (ls.error ? `: ${ls.error}` : ''));
  const failed = (hb.scene && hb.scene.failed) || [];  // scenes that could not be built: skipped, the show went on
  $('scene').textContent = (hb.scene ? `${hb.scene.number} ${hb.scene.name}` : 'none (no scenes)') +
    failed.map((f) => `; scene ${f.number} ${f.name} could not load and is skipped: ${f.error}`).join('');
  $('scene').className = failed.length ? 'bad' : '';
  $('hours').textContent = (st.open ? 'open' : 'closed') + (st.next_change ? ' until ' + st.next_change : '');
  $('cue').textContent = hb.cue ? 'cue ' + hb.cue : 'none';
  const devices = hb.devices || {};
  $('camera').textContent = devices.camera ? `${devices.camera.state}${devices.camera.reason ? ' (' +
    devices.camera.reason + ')' : ''}, presence ${hb.presence ?? '?'}, reconnects ${devices.camera.connects}`
    : 'none in this show';
  $('camera').className = !devices.camera || devices.camera.state === 'connected' ? '' : 'bad';
  const osc = hb.osc, bus = hb.bus || {};  // every counter docs/osc.md lists: the receiver's and the bus's
  const count = (o, keys) => keys.map((k) => `${k} ${o[k] ?? 0}`).join(', ');
  $('osc').textContent = osc ? `port ${osc.port}: ` + count(osc, ['packets', 'posted', 'scheduled', 'disallowed',
    'rate_limited', 'malformed', 'bad_args', 'out_of_range', 'too_far_ahead', 'schedule_full', 'unauthenticated',
    'replayed', 'feedback_sent', 'feedback_errors', 'errors']) + '; bus: ' + count(bus, ['applied', 'coalesced',
    'unbound', 'rejected', 'overflow']) : 'off';
  const at = st.attract || {};
  $('attract').textContent = !at.show ? 'off' : (at.playing ? 'playing ' + at.show.split('/').pop()
    : 'waiting') + (at.nobody_for != null ? `, nobody for ${at.nobody_for} s` : '') + ` (after ${at.after} s)`;
  const lr = hb.learn;
  $('learn').textContent = !lr ? 'off' : (lr.active ? 'on' + (lr.param ? ': move a MIDI control for ' + lr.param
    : ': touch a param') : 'off') + ` (${lr.learned} learned, ${lr.file})` + (lr.error ? ' ' + lr.error : '');
  const mem = st.memory || {}, mb = (v) => v == null ? '?' : v.toFixed(0);
  $('memory').textContent = `${mb(mem.engine_rss_mb)} MB engine, ${mb(mem.available_mb)} MB available`;
  $('disk').textContent = Object.entries(st.disk || {}).map(([k, d]) => !d ? `${k}: ?`
    : `${k}: ${mb(d.free_mb)} MB free of ${mb(d.total_mb)} MB`).join(', ');
  refreshLog();
  if (hb.thumbnail) $('thumb').src = '/thumbnail.jpg?' + hb.time;
  if (!cueFilled) {
    st.playlist.forEach((e, i) => { const o = document.createElement('option'); o.value = String(i);
      o.textContent = e.show.split('/').pop(); $('cue-show').appendChild(o); });
    cueFilled = true;
  }
  const errors = $('errors'); errors.replaceChildren();
  for (const e of st.errors.slice().reverse()) {
    const p = document.createElement('p'); p.className = 'bad'; p.textContent = when(e.time) + '  ' + e.message;
    errors.appendChild(p);
    if (e.traceback) {
      const pre = document.createElement('pre'); pre.textContent = e.traceback; errors.appendChild(pre);
    }
  }
  $('events').textContent = st.events.slice().reverse()
    .map((e) => `${when(e.time)}  ${e.kind}  ${e.detail}`).join('\\n');
}
async function refreshLog() {  // behind the token: nothing is asked for, and nothing shown, without it
  const token = $('token').value;
  if (!token) { $('log').textContent = ''; return; }
  const r = await fetch('/api/log?lines=50', {headers: {'Authorization': 'Bearer ' + token}}).catch(() => null);
  $('log').textContent = r && r.ok ? ((await r.json()).lines || []).join('\\n') : '';
}
async function control(path, body) {
  const token = $('token').value;
  sessionStorage.setItem('kiosk-token', token);
  const r = await fetch(path, {method: 'POST', body: body ? JSON.stringify(body) : null,
    headers: Object.assign({'Content-Type': 'application/json'}, token ? {'Authorization': 'Bearer ' + token} : {})});
  const answer = await r.json().catch(() => ({}));
  $('message').textContent = r.status === 202 ? `${r.status}: accepted ${answer.accepted}`
                                               : `${r.status}: ${answer.detail || 'refused'}`;
  $('message').className = r.status === 202 ? 'ok' : 'bad';
  refresh();
}
$('token').value = sessionStorage.getItem('kiosk-token') || '';
$('restart').onclick = () => control('/api/restart');
$('next').onclick = () => control('/api/next');
$('cue').onclick = () => control('/api/cue', {show: $('cue-show').value});
$('learn-on').onclick = () => control('/api/learn', {on: true});
$('learn-off').onclick = () => control('/api/learn', {on: false});
refresh(); setInterval(refresh, 2000);
</script>
</body></html>
"""
