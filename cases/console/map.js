// The cases console's map: the org's district and grid boundaries (GeoJSON) drawn as inline SVG, no tiles,
// nothing fetched (works offline), the active cases as marks labelled with their number and urgency in
// words, grids with active cases shaded, and the same content as a text list (the map's text alternative,
// and the keyboard's way to open a case from the map). Plain JS; used by console.js as CasesMap.draw.
"use strict";

const CasesMap = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const WIDTH = 800;

  function rings(geometry) {
    return geometry.type === "Polygon" ? [geometry.coordinates[0]] : geometry.coordinates.map((p) => p[0]);
  }

  function svgEl(tag, attrs = {}, text = "") {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  // the projection of the boundaries' bounding box onto the SVG (equirectangular: a city is small)
  function projection(shapes) {
    const points = shapes.flatMap((u) => rings(u.boundary).flat());
    if (!points.length) return null;
    const xs = points.map((p) => p[0]); const ys = points.map((p) => p[1]);
    const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const height = Math.max(200, Math.round(WIDTH * (y1 - y0) / ((x1 - x0) || 1)));
    return {
      height,
      x: (lon) => ((lon - x0) / ((x1 - x0) || 1)) * (WIDTH - 20) + 10,
      y: (lat) => height - 10 - ((lat - y0) / ((y1 - y0) || 1)) * (height - 20),
    };
  }

  function centre(unit) {
    const ring = rings(unit.boundary)[0];
    return [ring.reduce((s, p) => s + p[0], 0) / ring.length, ring.reduce((s, p) => s + p[1], 0) / ring.length];
  }

  function unitShapes(svg, shapes, busy, proj) {
    for (const unit of shapes) {
      const active = busy.has(unit.code);
      for (const ring of rings(unit.boundary)) {
        const polygon = svgEl("polygon", {
          points: ring.map((p) => `${proj.x(p[0]).toFixed(1)},${proj.y(p[1]).toFixed(1)}`).join(" "),
          class: `unit-${unit.level}${active ? " has-cases" : ""}`, "data-unit": unit.code,
        });
        polygon.append(svgEl("title", {}, `${unit.name} ${unit.name_en}${active ? " · 有在办工单 active cases" : ""}`));
        svg.append(polygon);
      }
      if (unit.level === "district") {
        const [lon, lat] = centre(unit);
        svg.append(svgEl("text", { x: proj.x(lon), y: proj.y(lat), class: "district-label", "text-anchor": "middle" },
          unit.name));
      }
    }
  }

  function caseMarks(svg, cases, byCode, proj, labels, onOpen) {
    for (const c of cases) {
      const unit = byCode[c.unit];
      let lon = c.lon; let lat = c.lat;
      if ((lon == null || lat == null) && unit && unit.boundary) [lon, lat] = centre(unit);
      if (lon == null || lat == null) continue;
      const mark = svgEl("g", { class: `case-mark urgency-${c.urgency}`, "data-case": c.code });
      mark.append(svgEl("circle", { cx: proj.x(lon), cy: proj.y(lat), r: 7 }),
        svgEl("text", { x: proj.x(lon) + 10, y: proj.y(lat) + 4 }, `${c.code} ${labels[c.urgency].split(" ")[0]}`));
      mark.addEventListener("click", () => onOpen(c.code));
      svg.append(mark);
    }
  }

  function describe(cases, labels) {
    if (!cases.length) return "无在办工单 No active cases";
    return `${cases.length} 件在办工单 active cases: ` +
      cases.map((c) => `${c.code} ${c.unit_name} ${labels[c.urgency]}`).join("; ");
  }

  // the text version: each unit with active cases, its cases as buttons (keyboard), then the quiet grids
  function textList(list, shapes, cases, busy, labels, states, onOpen) {
    const items = [];
    const names = Object.fromEntries(shapes.map((u) => [u.code, `${u.name} ${u.name_en}`]));
    for (const [code, here] of busy) {
      const li = document.createElement("li");
      li.setAttribute("data-unit", code);
      li.append(`${names[code] || here[0].unit_name}: `);
      here.forEach((c, i) => {
        const open = document.createElement("button");
        open.type = "button"; open.className = "link"; open.setAttribute("data-case", c.code);
        open.textContent = c.code;
        open.addEventListener("click", () => onOpen(c.code));
        li.append(i ? "; " : "", open, ` ${labels[c.urgency]} · ${states[c.state] || c.state} · ${c.title}`);
      });
      items.push(li);
    }
    const quiet = shapes.filter((u) => u.level === "grid" && !busy.has(u.code));
    const rest = document.createElement("li");
    rest.textContent = `无在办工单的网格 Grids without active cases (${quiet.length}): ` +
      (quiet.map((u) => u.name).join("、") || "—");
    items.push(rest);
    list.replaceChildren(...items);
  }

  /**
   * Draw ``org``'s districts and grids and the active ``cases`` into ``container`` (SVG) and ``list``
   * (text); ``labels`` names urgencies, ``states`` states; ``onOpen(code)`` opens a case.
   */
  function draw(container, list, org, cases, labels, states, onOpen) {
    const shapes = org.units.filter((u) => u.boundary && (u.level === "district" || u.level === "grid"));
    const byCode = Object.fromEntries(org.units.map((u) => [u.code, u]));
    const busy = new Map();
    for (const c of cases) busy.set(c.unit, [...(busy.get(c.unit) || []), c]);
    textList(list, shapes, cases, busy, labels, states, onOpen);
    const proj = projection(shapes);
    if (!proj) {
      const none = document.createElement("p");
      none.textContent = "无地图数据 No boundaries";
      container.replaceChildren(none);
      return;
    }
    const svg = svgEl("svg", { viewBox: `0 0 ${WIDTH} ${proj.height}`, role: "img",
      "aria-labelledby": "map-title map-desc" });
    svg.append(svgEl("title", { id: "map-title" }, "网格与在办工单地图 Map of grids and active cases"),
      svgEl("desc", { id: "map-desc" }, describe(cases, labels)));
    unitShapes(svg, shapes, busy, proj);
    caseMarks(svg, cases, byCode, proj, labels, onOpen);
    container.replaceChildren(svg);
  }

  return { draw };
})();
