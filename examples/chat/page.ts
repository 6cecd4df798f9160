/** The chat page: plain HTML and JavaScript, no build step. */
export const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Troupe chat</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #222; }
  header { background: #2d2a4a; color: #fff; padding: 10px 16px; display: flex; gap: 12px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header span { opacity: .75; }
  #log { list-style: none; margin: 0; padding: 12px 16px; height: calc(100vh - 130px); overflow-y: auto; }
  #log li { background: #fff; border-radius: 8px; padding: 6px 10px; margin: 6px 0; max-width: 70%; box-shadow: 0 1px 2px #0002; }
  #log li.mine { margin-left: auto; background: #dcf3dc; }
  #log b { margin-right: 6px; }
  #log time { color: #888; font-size: 12px; margin-left: 6px; }
  form { display: flex; gap: 8px; padding: 10px 16px; background: #fff; border-top: 1px solid #ddd; }
  input { font: inherit; padding: 6px 8px; border: 1px solid #bbb; border-radius: 6px; }
  #name { width: 9em; }
  #text { flex: 1; }
  #status { font-size: 12px; }
</style>
</head>
<body>
<header><h1>Troupe chat</h1><span id="room"></span><span id="status">connecting…</span></header>
<ul id="log"></ul>
<form id="form">
  <input id="name" placeholder="your name" maxlength="40" required>
  <input id="text" placeholder="say something" maxlength="500" autocomplete="off" required>
  <button>Send</button>
</form>
<script type="module">
const params = new URLSearchParams(location.search);
const room = (params.get("room") || "lobby").toLowerCase().replace(/[^a-z0-9-]/g, "").slice(0, 32) || "lobby";
const $ = (id) => document.getElementById(id);
$("room").textContent = "#" + room;
$("name").value = params.get("name") || localStorage.getItem("troupe-chat-name") || "";
const seen = new Set();
function show(m) {
  if (seen.has(m.id)) return;
  seen.add(m.id);
  const li = document.createElement("li");
  if (m.user === $("name").value.trim()) li.className = "mine";
  const who = document.createElement("b");
  who.textContent = m.user;
  const when = document.createElement("time");
  when.textContent = new Date(m.at).toLocaleTimeString();
  li.append(who, document.createTextNode(m.text), when);
  li.dataset.id = m.id;
  const items = [...$("log").children];
  const after = items.find((x) => Number(x.dataset.id) > m.id);
  $("log").insertBefore(li, after || null);
  $("log").scrollTop = $("log").scrollHeight;
}
async function call(handler, payload) {
  const res = await fetch("/api/room/" + room + "/" + handler, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error.message);
  return body;
}
const live = new EventSource("/api/_topics/chat." + room);
live.onopen = async () => {
  $("status").textContent = "live";
  for (const m of await call("recent")) show(m);   // after the feed is open: nothing is missed
};
live.onerror = () => ($("status").textContent = "reconnecting…");
live.onmessage = (e) => show(JSON.parse(e.data));
$("form").onsubmit = async (e) => {
  e.preventDefault();
  const user = $("name").value.trim();
  const text = $("text").value;
  localStorage.setItem("troupe-chat-name", user);
  try {
    show(await call("post", { user, text }));
    $("text").value = "";
  } catch (err) {
    $("status").textContent = err.message;
  }
};
</script>
</body>
</html>
`;
