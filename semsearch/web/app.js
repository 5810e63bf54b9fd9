// The search page: one file, no framework, nothing fetched from elsewhere.
// Views follow the address's fragment, so the back button works:
//   #/search?q=...&mode=...   results     #/doc/ID?chunk=C&q=...   a document
//   #/similar/ID               documents like one
"use strict";

// As semsearch/retrieval.py's STOPWORDS and semsearch/display.py's snippet(): the same words are
// marked in the terminal and on the page.
const STOPWORDS = new Set(`a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once only or other our ours ourselves out over
own same she should so some such than that the their theirs them themselves then there these
they this those through to too under until up very was we were what when where which while who
whom why will with would you your yours yourself yourselves`.split(/\s+/));
const WORD = /[\p{L}\p{N}]+/gu;
const SNIPPET_WIDTH = 240;

const $ = (id) => document.getElementById(id);

function stemKey(word) {
  word = word.toLowerCase();
  return word.length > 5 ? word.slice(0, 5) : word;
}

// Chinese, Japanese and Korean runs, as semsearch/cjk.py finds them: no spaces between words, so
// what is marked there is every stretch made of the query's pairs of characters.
const CJK_RUN = /[\u1100-\u11ff\u3005-\u3007\u3040-\u3098\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u3100-\u312f\u31a0-\u31bf\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff66-\uffdc\u{20000}-\u{3134f}]+/gu;

// What to mark for a query: stem keys of its words, and the character pairs of its CJK runs.
function queryKeys(query) {
  const words = (query.match(WORD) || []).map((w) => w.toLowerCase());
  const content = words.filter((w) => !STOPWORDS.has(w));
  const keys = new Set();
  const pieces = new Set();
  for (const word of content.length ? content : words) {
    for (const run of word.match(CJK_RUN) || []) {
      const chars = [...run];
      if (chars.length === 1) pieces.add(run);
      for (let i = 0; i + 1 < chars.length; i++) pieces.add(chars[i] + chars[i + 1]);
    }
    for (const rest of word.replace(CJK_RUN, " ").split(" ")) if (rest) keys.add(stemKey(rest));
  }
  return { keys, pieces };
}

// The [start, end) stretches of text to mark, in order, overlapping ones merged.
function spans(text, query) {
  const found = [];
  for (const match of text.matchAll(WORD)) {
    if (query.keys.has(stemKey(match[0]))) found.push([match.index, match.index + match[0].length]);
  }
  for (const piece of query.pieces) {
    for (let at = text.indexOf(piece); at >= 0; at = text.indexOf(piece, at + 1)) found.push([at, at + piece.length]);
  }
  found.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const merged = [];
  for (const [start, end] of found) {
    const last = merged[merged.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end); else merged.push([start, end]);
  }
  return merged;
}

// The SNIPPET_WIDTH-character window of text with the most query words.
function snippetWindow(text, query) {
  const flat = text.split(/\n\s*\n/).map((p) => p.split(/\s+/).join(" ").trim()).filter(Boolean).join(" · ");
  if (flat.length <= SNIPPET_WIDTH) return { text: flat, before: false, after: false };
  const matches = spans(flat, query).map((span) => span[0]);
  let start = 0;
  let best = -1;
  for (const first of matches) {
    const count = matches.filter((m) => m >= first && m < first + SNIPPET_WIDTH).length;
    if (count > best) { best = count; start = first; }
  }
  start = Math.max(0, Math.min(start - Math.floor(SNIPPET_WIDTH / 6), flat.length - SNIPPET_WIDTH));
  if (start > 0) {
    const space = flat.indexOf(" ", start);
    if (space >= 0 && space < start + 20) start = space + 1;
  }
  let end = Math.min(flat.length, start + SNIPPET_WIDTH);
  if (end < flat.length) {
    const space = flat.lastIndexOf(" ", end);
    if (space > start + SNIPPET_WIDTH / 2) end = space;
  }
  return { text: flat.slice(start, end), before: start > 0, after: end < flat.length };
}

// Text as DOM nodes, each query word wrapped in <mark> (never innerHTML: the text is the user's).
function marked(text, query) {
  const fragment = document.createDocumentFragment();
  let last = 0;
  for (const [start, end] of spans(text, query)) {
    fragment.append(text.slice(last, start));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(start, end);
    fragment.append(mark);
    last = end;
  }
  fragment.append(text.slice(last));
  return fragment;
}

function whereOf(hit) {
  return hit.page != null ? `${hit.path} (page ${hit.page}, line ${hit.start_line})` : `${hit.path}:${hit.start_line}`;
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON: reported below */ }
  if (!response.ok) throw new Error(body && body.error ? body.error : `${response.status} ${response.statusText}`);
  return body;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function showResults(hits, heading, query) {
  $("document-view").hidden = true;
  $("results-view").hidden = false;
  $("results-heading").hidden = !heading;
  $("results-heading").textContent = heading || "";
  const keys = queryKeys(query || "");
  const list = $("results");
  list.replaceChildren();
  for (const hit of hits) {
    const part = snippetWindow(hit.text, keys);
    const open = `#/doc/${hit.document_id}?chunk=${hit.chunk_id}&q=${encodeURIComponent(query || "")}`;
    list.append(element("li", { className: "hit" },
      element("h3", {}, element("a", { href: open, className: "open" }, hit.title || hit.path)),
      hit.heading ? element("div", { className: "heading" }, hit.heading) : "",
      element("div", { className: "location" }, whereOf(hit), " ",
        element("span", { className: "score" },
          hit.relevance != null ? `relevance ${hit.relevance.toFixed(2)}` : `score ${hit.score.toFixed(3)}`)),
      element("p", { className: "snippet" }, part.before ? "…" : "", marked(part.text, keys), part.after ? "…" : ""),
      element("div", { className: "actions" },
        element("a", { href: open }, "Open"),
        element("a", { href: `#/similar/${hit.document_id}`, className: "similar" }, "More like this")),
    ));
  }
}

async function runSearch(params) {
  const query = params.get("q") || "";
  $("q").value = query;
  for (const name of ["mode", "path", "limit"]) if (params.get(name)) $(name).value = params.get(name);
  $("type").value = params.getAll("type").join(", ");
  $("group").checked = params.get("group") === "true";
  if (!query.trim()) { showResults([], ""); say(""); return; }
  say("Searching…");
  const started = performance.now();
  const hits = await api(`/search?${params}`);
  const took = Math.round(performance.now() - started);
  say(hits.length ? `${hits.length} result${hits.length === 1 ? "" : "s"} (${took} ms)` : "No results.");
  showResults(hits, "", query);
}

async function showSimilar(id) {
  say("Looking for similar documents…");
  const [source, hits] = await Promise.all([api(`/documents/${id}`), api(`/similar/${id}?limit=${$("limit").value}`)]);
  say(hits.length ? "" : "No similar documents.");
  showResults(hits, `Documents like “${source.title || source.path}”`, "");
}

async function showDocument(id, params) {
  say("");
  const doc = await api(`/documents/${id}`);
  const keys = queryKeys(params.get("q") || "");
  const current = Number(params.get("chunk"));
  $("results-view").hidden = true;
  $("document-view").hidden = false;
  $("doc-title").textContent = doc.title || doc.path;
  $("doc-path").textContent = doc.path;
  $("doc-similar").href = `#/similar/${doc.id}`;
  $("back").href = params.get("q") ? `#/search?q=${encodeURIComponent(params.get("q"))}` : "#/";
  const meta = $("doc-meta");
  meta.replaceChildren();
  const facts = { format: doc.format, indexed: doc.indexed_at, chunks: doc.chunks.length, ...doc.metadata };
  for (const [key, value] of Object.entries(facts)) {
    meta.append(element("dt", {}, key), element("dd", {}, typeof value === "object" ? JSON.stringify(value) : String(value)));
  }
  const chunks = $("doc-chunks");
  chunks.replaceChildren();
  let focus = null;
  for (const chunk of doc.chunks) {
    const lines = chunk.page != null ? `page ${chunk.page}, lines ${chunk.start_line}–${chunk.end_line}`
      : `lines ${chunk.start_line}–${chunk.end_line}`;
    const section = element("section", { className: "chunk" + (chunk.chunk_id === current ? " current" : ""), id: `chunk-${chunk.chunk_id}` },
      element("div", { className: "lines" }, `${doc.path}:${chunk.start_line} · ${lines}`),
      element("pre", {}, marked(chunk.text, keys)));
    if (chunk.chunk_id === current) focus = section;
    chunks.append(section);
  }
  if (focus) focus.scrollIntoView({ block: "center" }); else window.scrollTo(0, 0);
}

async function route() {
  const [path, query] = (window.location.hash.slice(1) || "/").split("?");
  const params = new URLSearchParams(query || "");
  try {
    let match;
    if ((match = path.match(/^\/doc\/(\d+)$/))) await showDocument(match[1], params);
    else if ((match = path.match(/^\/similar\/(\d+)$/))) await showSimilar(match[1]);
    else await runSearch(params);
  } catch (error) {
    say(error.message, true);
  }
}

async function showStatus() {
  try {
    const status = await api("/status");
    $("status").textContent = `${status.documents} documents, ${status.chunks} chunks · ${status.model}`;
  } catch (error) {
    $("status").textContent = error.message;
  }
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams();
  params.set("q", $("q").value);
  params.set("mode", $("mode").value);
  params.set("limit", $("limit").value);
  if ($("path").value.trim()) params.set("path", $("path").value.trim());
  for (const type of $("type").value.split(/[\s,]+/).filter(Boolean)) params.append("type", type);
  if ($("group").checked) params.set("group", "true");
  const target = `#/search?${params}`;
  if (window.location.hash === target) route(); else window.location.hash = target;
});
window.addEventListener("hashchange", route);
showStatus();
route();
