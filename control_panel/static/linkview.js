// The dashboard's link view: for every ofdm link, the SNR per subcarrier of its recent frames as a heat strip
// (one row per frame, newest at the bottom; one column per subcarrier), from GET /api/summary's
// links[name].subcarrier_snr_db (rows of dB values, docs/design.md §5). Flat links have no strip.
"use strict";

const SNR_STRIP = {lo: -10, hi: 40, width: 360, row: 5};  // colour scale in dB; strip width, pixels per frame

function snrColour(db) {  // blue (deep fade) -> green -> yellow (strong), clipped to the scale
  const t = Math.min(1, Math.max(0, (db - SNR_STRIP.lo) / (SNR_STRIP.hi - SNR_STRIP.lo)));
  return `hsl(${240 - 180 * t}, 80%, ${25 + 40 * t}%)`;
}

function drawSnrStrip(canvas, rows) {
  const f = rows[0].length, c = Math.max(2, Math.min(20, Math.floor(SNR_STRIP.width / f))), r = SNR_STRIP.row;
  canvas.width = f * c; canvas.height = rows.length * r;
  const g = canvas.getContext("2d");
  rows.forEach((row, i) => row.forEach((db, j) => { g.fillStyle = snrColour(db); g.fillRect(j * c, i * r, c, r); }));
}

function drawSnrStrips(links) {
  const box = document.getElementById("snr-strips");
  if (!box) return;
  const ofdm = Object.entries(links).filter(([, l]) => l.phy === "ofdm" && (l.subcarrier_snr_db || []).length);
  if (!ofdm.length) {
    box.innerHTML = '<span class="muted">no ofdm link with traffic yet (PUT /api/links with "phy": "ofdm")</span>';
    return;
  }
  box.replaceChildren(...ofdm.map(([name, l]) => {
    const rows = l.subcarrier_snr_db, all = rows.flat();
    const fig = document.createElement("figure"), canvas = document.createElement("canvas");
    fig.style.margin = "0"; canvas.style.border = "1px solid #ccc";
    canvas.dataset.name = name; canvas.title = `${name}: SNR per subcarrier, last ${rows.length} frames`;
    drawSnrStrip(canvas, rows);
    const cap = document.createElement("figcaption");
    cap.textContent = `${name} · ${l.channel_model} ${l.delay_spread_ns} ns ${l.speed_kmh} km/h · ` +
      `${Math.min(...all).toFixed(1)} to ${Math.max(...all).toFixed(1)} dB`;
    fig.append(canvas, cap);
    return fig;
  }));
  const legend = document.createElement("div");
  legend.className = "muted";
  legend.innerHTML = `frames down (newest last), subcarriers across · colour <span style="color:${snrColour(SNR_STRIP.lo)}">` +
    `■ ${SNR_STRIP.lo} dB</span> to <span style="color:${snrColour(SNR_STRIP.hi)}">■ ${SNR_STRIP.hi} dB</span>`;
  box.append(legend);
}
