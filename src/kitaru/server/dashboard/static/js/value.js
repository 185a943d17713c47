// An artifact's value: pretty JSON or text, bytes as size + download, pickles marked,
// an argument that was only described (not stored) shown as its description.

import { api, blob } from "./api.js";
import { h, replace, pretty, fmtBytes, errorBox } from "./dom.js";

export function downloadButton(artifact) {
  return h("button", {
    type: "button", class: "link download",
    onclick: async () => {
      const data = await blob(`/artifacts/${encodeURIComponent(artifact.artifact_id)}/data`);
      const url = URL.createObjectURL(data);
      const a = h("a", { href: url, download: `${artifact.name || artifact.artifact_id}.bin` });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    },
  }, `Download (${fmtBytes(artifact.size)})`);
}

/** A box that fills itself with the artifact's preview. */
export function artifactValue(artifact) {
  const box = h("div", { class: "artifact-value", dataset: { artifact: artifact.artifact_id } });
  const head = h("div", { class: "artifact-head" },
    h("strong", null, artifact.name || artifact.role || "value"),
    h("span", { class: "muted" }, ` ${artifact.serializer || ""} · ${fmtBytes(artifact.size)}`));
  box.appendChild(head);
  if (artifact.serializer === "pickle") {
    box.appendChild(h("p", { class: "pickled" }, "⚠ Pickled (cloudpickle): the server never unpickles; load it with ArtifactRef.load() where the flow's code runs. "));
    box.appendChild(downloadButton(artifact));
    return box;
  }
  if (artifact.serializer === "not_stored") {
    // An argument that would need pickle: only its description was recorded.
    box.appendChild(h("p", { class: "muted" }, "Not stored (it would need pickle); described as:"));
    const body = h("div", null, h("span", { class: "muted" }, "Loading…"));
    box.appendChild(body);
    api(`/artifacts/${encodeURIComponent(artifact.artifact_id)}/preview`)
      .then((p) => replace(body, h("pre", { class: "value" }, p.reason || "")))
      .catch((err) => replace(body, errorBox(err)));
    return box;
  }
  const body = h("div", null, h("span", { class: "muted" }, "Loading…"));
  box.appendChild(body);
  api(`/artifacts/${encodeURIComponent(artifact.artifact_id)}/preview`).then((p) => {
    if (!p.previewable) {
      replace(body, h("p", { class: "muted" }, p.reason || "No preview."), downloadButton(artifact));
    } else if (p.serializer === "bytes") {
      replace(body, h("p", null, `Binary value, ${fmtBytes(artifact.size)}. `), downloadButton(artifact));
    } else {
      replace(body, pretty(p.value));
    }
  }).catch((err) => replace(body, errorBox(err)));
  return box;
}
