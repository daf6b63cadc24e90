"""The web app's pages: plain HTML, CSS and JavaScript in strings (no framework, no CDN: a Nano on a closed network
serves them alone). Every page gets the token in ``TOKEN`` and passes it on to its fetches and media URLs; text from
the server is set with ``textContent``, never as HTML.
"""

import json
from typing import Optional
from urllib.parse import quote

STYLE = """
body{margin:0;background:#111;color:#ddd;font:14px sans-serif}
a{color:#8cf}nav{padding:6px 10px;background:#222}nav a{margin-right:14px}
#banner{display:none;background:#c00;color:#fff;font:bold 28px sans-serif;padding:8px 12px;text-align:center}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:8px;padding:8px}
.tile{position:relative;border:4px solid #333;background:#000;display:block;color:#ddd;text-decoration:none}
.tile img{display:block;width:100%;min-height:60px}
.tile .info{padding:4px 6px;background:#222}
.alarm{position:absolute;top:8px;left:8px;right:8px;display:none;background:rgba(200,0,0,.85);color:#fff;
font:bold 32px sans-serif;text-align:center;padding:4px}
.tile.alarmed{border-color:#f00}.tile.alarmed .alarm{display:block}
.bad{color:#f88}table{border-collapse:collapse;margin:8px}td,th{border:1px solid #333;padding:3px 8px}
.event{display:flex;gap:10px;padding:8px;border-bottom:1px solid #333}.event img,.event video{width:320px}
"""

COMMON_JS = """
var TOKEN=__TOKEN__;
function u(path){if(!TOKEN)return path;return path+(path.indexOf("?")<0?"?":"&")+"token="+encodeURIComponent(TOKEN);}
function get(path){return fetch(u(path),{cache:"no-store"}).then(function(r){return r.json();});}
function el(tag,text,cls){var e=document.createElement(tag);if(text!==undefined)e.textContent=text;
if(cls)e.className=cls;return e;}
function num(v,d){return (v===null||v===undefined)?"-":Number(v).toFixed(d);}
function alarmTitle(active){return active.length?active.map(function(c){return c.toUpperCase();}).join(" + "):"";}
function showAlarm(active,base){var t=alarmTitle(active);document.title=t?t+" - "+base:base;
var b=document.getElementById("banner");if(b){b.textContent=t;b.style.display=t?"block":"none";}}
"""

NAV = """<nav><a href="__HOME__">Cameras</a><a href="__EVENTS__">Events</a><a href="__HEALTH__">Health</a></nav>"""


def _page(title: str, body: str, script: str, token: Optional[str]) -> bytes:
    token_js = json.dumps(token or "").replace("</", "<\\/")
    query = "?token=" + quote(token, safe="") if token else ""
    nav = NAV.replace("__HOME__", "/" + query).replace("__EVENTS__", "/events" + query).replace(
        "__HEALTH__", "/health" + query)
    html = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + title + "</title>"
            "<meta name=\"viewport\" content=\"width=device-width\"><style>" + STYLE + "</style></head>\n<body>"
            + body.replace("__NAV__", nav) + "\n<script>" + COMMON_JS.replace("__TOKEN__", token_js) + script
            + "</script></body></html>\n")
    return html.encode("utf-8")


GRID_BODY = """__NAV__<div id="banner"></div><div id="grid"></div>"""
GRID_JS = """
var tiles={};var MJPEG_MAX=4;
function tile(cam,count){var t=tiles[cam.name];if(t)return t;
t={a:el("a",undefined,"tile"),img:el("img"),alarm:el("div","","alarm"),info:el("div","","info")};
t.a.href=u("/camera/"+encodeURIComponent(cam.name));t.img.alt=cam.name;
// a browser keeps about 6 connections per host: past a few cameras, the grid refreshes still frames instead
t.mjpeg=count<=MJPEG_MAX;t.img.src=u(t.mjpeg?cam.stream_url:cam.frame_url);
t.a.appendChild(t.img);t.a.appendChild(t.alarm);t.a.appendChild(t.info);
document.getElementById("grid").appendChild(t.a);tiles[cam.name]=t;return t;}
function poll(){get("/api/cameras").then(function(s){
s.cameras.forEach(function(cam){var t=tile(cam,s.cameras.length);
var label=alarmTitle(cam.alarms);t.alarm.textContent=label;t.a.className="tile"+(label?" alarmed":"");
t.info.textContent=cam.name+"  "+cam.status+"  FPS "+num(cam.fps,1)+"  frames "+cam.frames;
t.info.className="info"+(cam.status==="ok"?"":" bad");
if(!t.mjpeg)t.img.src=u(cam.frame_url+"?t="+Date.now());});
showAlarm(s.active,"jetson_detect");}).catch(function(){});}
setInterval(poll,1000);poll();
"""

CAMERA_BODY = """<img id="view" style="display:block;max-width:100%;margin:auto" alt="live detections">
<div id="alarm" class="alarm"></div><div id="info" class="info" style="padding:6px 10px">waiting for frames</div>
<div id="banner"></div>__NAV__"""
CAMERA_JS = """
var CAMERA=__CAMERA__;var view=document.getElementById("view");
view.src=u("/camera/"+encodeURIComponent(CAMERA)+"/stream.mjpg");
function poll(){get("/api/cameras").then(function(s){s.cameras.forEach(function(cam){if(cam.name!==CAMERA)return;
var label=alarmTitle(cam.alarms);var a=document.getElementById("alarm");a.textContent=label;
a.style.display=label?"block":"none";showAlarm(cam.alarms,CAMERA+" - jetson_detect");
document.getElementById("info").textContent=cam.name+"  "+cam.status+"  FPS "+num(cam.fps,1)+"  frames "+
cam.frames+"  skipped "+cam.skipped+"  video "+view.naturalWidth+"x"+view.naturalHeight+"  viewers "+cam.viewers;
});}).catch(function(){});}
setInterval(poll,1000);poll();
"""

EVENTS_BODY = """__NAV__<div style="padding:8px">camera <select id="camera"><option value="">all</option></select>
class <select id="cls"><option value="">all</option></select></div><div id="events">loading</div>"""
EVENTS_JS = """
var seenCams={},seenClasses={};
function option(select,seen,value){if(!value||seen[value])return;seen[value]=1;var o=el("option",value);
o.value=value;document.getElementById(select).appendChild(o);}
function load(){var cam=document.getElementById("camera").value,cls=document.getElementById("cls").value;
get("/api/events?limit=50&camera="+encodeURIComponent(cam)+"&class="+encodeURIComponent(cls)).then(function(s){
var list=document.getElementById("events");list.textContent=s.events.length?"":"no events";
s.events.forEach(function(e){option("camera",seenCams,e.camera);option("cls",seenClasses,e["class"]);
var row=el("div",undefined,"event");row.dataset.id=e.id;
if(e.snapshot_url){var img=el("img");img.src=u(e.snapshot_url);img.alt="snapshot";img.loading="lazy";
row.appendChild(img);}
// clips load when played: fifty clips at once would swamp a Nano and the browser's six connections
if(e.clip_url){var v=el("video");v.src=u(e.clip_url);v.controls=true;v.muted=true;v.preload="none";
if(e.snapshot_url)v.poster=u(e.snapshot_url);v.setAttribute("playsinline","");row.appendChild(v);}
var text=el("div");text.appendChild(el("div",(e["class"]||"").toUpperCase()+" on "+e.camera));
text.appendChild(el("div",String(e.time)));text.appendChild(el("div","confidence "+num(e.confidence,2)));
text.appendChild(el("div",e.state+(e.end_time?" at "+e.end_time:"")));row.appendChild(text);list.appendChild(row);
});}).catch(function(){document.getElementById("events").textContent="cannot load events";});}
get("/api/cameras").then(function(s){s.cameras.forEach(function(c){option("camera",seenCams,c.name);});});
document.getElementById("camera").onchange=load;document.getElementById("cls").onchange=load;load();
"""

HEALTH_BODY = """__NAV__<div id="banner"></div><h3 style="margin:8px">Cameras</h3><table id="cams"></table>
<h3 style="margin:8px">Stages (ms)</h3><table id="stages"></table>
<h3 style="margin:8px">System</h3><table id="system"></table>"""
HEALTH_JS = """
function fill(id,rows){var t=document.getElementById(id);t.textContent="";rows.forEach(function(r,i){
var tr=el("tr");r.forEach(function(c){tr.appendChild(el(i?"td":"th",String(c)));});t.appendChild(tr);});}
function poll(){get("/api/stats").then(function(s){
fill("cams",[["camera","status","FPS","detect FPS","frames","skipped","dropped","reconnects"]].concat(
s.cameras.map(function(c){return [c.name,c.status,num(c.fps,1),num(c.detect_fps,1),c.frames,c.skipped,c.dropped,
c.reconnects];})));
fill("stages",[["stage","ms"]].concat(Object.keys(s.stage_ms).map(function(k){return [k,num(s.stage_ms[k],1)];})));
var t=s.telemetry||{},d=s.disk||{},rows=[["what","value"],["CPU load %",num(t.cpu_percent,0)],
["GPU load %",num(t.gpu_percent,0)],["RAM MB",num(t.ram_used_mb,0)+" / "+num(t.ram_total_mb,0)]];
Object.keys(t.temperatures_c||{}).forEach(function(k){rows.push([k+" \\u00b0C",num(t.temperatures_c[k],1)]);});
rows.push(["disk free GB",num(d.free_bytes/1e9,2)+" of "+num(d.total_bytes/1e9,2)+" ("+(d.path||"")+")"]);
fill("system",rows);showAlarm(s.active,"health - jetson_detect");}).catch(function(){});}
setInterval(poll,1000);poll();
"""


def grid_page(token: Optional[str]) -> bytes:
    return _page("jetson_detect", GRID_BODY, GRID_JS, token)


def camera_page(camera: str, token: Optional[str]) -> bytes:
    camera_js = json.dumps(camera).replace("</", "<\\/")
    return _page("jetson_detect", CAMERA_BODY, CAMERA_JS.replace("__CAMERA__", camera_js), token)


def events_page(token: Optional[str]) -> bytes:
    return _page("events - jetson_detect", EVENTS_BODY, EVENTS_JS, token)


def health_page(token: Optional[str]) -> bytes:
    return _page("health - jetson_detect", HEALTH_BODY, HEALTH_JS, token)
