// Driftless UI: the little script the pages use. The pages work without
// it; it only filters tables as you type.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const rows = document.querySelectorAll(input.dataset.filter);
    input.addEventListener("input", () => {
      const q = input.value.trim().toLowerCase();
      for (const row of rows) {
        row.hidden = q !== "" && !(row.dataset.text || row.textContent).toLowerCase().includes(q);
      }
      // A group (a section, a kind's table) whose rows are all hidden goes too.
      for (const group of document.querySelectorAll("[data-filter-group]")) {
        const mine = [...rows].filter((r) => group.contains(r));
        if (mine.length > 0) group.hidden = mine.every((r) => r.hidden);
      }
    });
  }
});
