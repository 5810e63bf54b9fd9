// The API reference: /openapi.json rendered as a page (served locally; no CDN, no framework).
"use strict";

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function typeOf(schema) {
  if (!schema) return "";
  if (schema.enum) return schema.enum.join(" | ");
  if (schema.anyOf) return schema.anyOf.map(typeOf).filter((t) => t !== "null").join(" | ");
  if (schema.type === "array") return `${typeOf(schema.items)}, repeatable`;
  const bounds = [];
  if (schema.minimum != null) bounds.push(`≥ ${schema.minimum}`);
  if (schema.maximum != null) bounds.push(`≤ ${schema.maximum}`);
  if (schema.maxLength != null) bounds.push(`≤ ${schema.maxLength} chars`);
  return [schema.type || "", ...bounds].join(", ");
}

async function render() {
  const holder = document.getElementById("operations");
  let spec;
  try {
    const response = await fetch("/openapi.json");
    spec = await response.json();
    if (!response.ok) throw new Error(spec.error || response.statusText);
  } catch (error) {
    holder.replaceChildren(element("p", { className: "error" }, `Cannot read /openapi.json: ${error.message}`));
    return;
  }
  document.getElementById("description").textContent = `${spec.info.title} ${spec.info.version}: ${spec.info.description || ""}`;
  holder.replaceChildren();
  for (const [path, operations] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const rows = (operation.parameters || []).map((p) => element("tr", {},
        element("td", {}, element("code", {}, p.name)),
        element("td", {}, p.in),
        element("td", {}, p.required ? "required" : (p.schema && p.schema.default !== undefined ? `default ${JSON.stringify(p.schema.default)}` : "")),
        element("td", {}, typeOf(p.schema)),
        element("td", {}, p.description || "")));
      const codes = Object.entries(operation.responses || {}).map(([code, r]) => `${code} ${r.description}`).join(" · ");
      holder.append(element("section", { className: "hit" },
        element("h3", {}, element("code", {}, `${method.toUpperCase()} ${path}`), " ", operation.summary || ""),
        element("p", {}, operation.description || ""),
        rows.length ? element("table", {}, element("tr", {},
          ...["name", "in", "", "type", "what"].map((h) => element("th", {}, h))), ...rows) : "",
        element("p", { className: "quiet" }, `Responses: ${codes}`)));
    }
  }
}

render();
