#pragma once
// The SVG heat map of addrop-inspect: two panels side by side over the non-pad tokens of
// one example, one layer, one head. Left: the attribution map B_l[i, j] (query rows,
// key columns) on a diverging blue-white-red scale symmetric about 0, with a colour bar
// and the map's min and max. Right: the keep mask: kept cells white, candidates that
// were kept amber, dropped cells dark with a white cross. Axis labels are the tokens.
//
// Every heat-map cell is a <rect class="cell ..."> (n*n per panel) with a <title>
// tooltip; the file is standalone SVG 1.1 (no scripts, no external references).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace addrop_inspect {

/// What one heat map shows. Rows are queries i, columns keys j, both over the same
/// n tokens; values/candidates/keep are n*n row-major.
struct HeatMap {
  std::string title;          ///< first line of the heading
  std::string subtitle;       ///< second line (options)
  std::string left_title;     ///< e.g. "attribution B (GA)"
  std::string right_title;    ///< e.g. "keep mask"
  std::vector<std::string> labels;  ///< n token labels (raw text; escaped here)
  std::vector<double> values;       ///< n*n
  std::vector<int> candidates;      ///< n*n 0/1
  std::vector<int> keep;            ///< n*n 0/1
};

namespace svg_detail {

/// Appends the code point `cp` as UTF-8.
inline void put_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Decodes `s` as UTF-8 into code points; an invalid byte becomes U+FFFD.
inline std::vector<uint32_t> decode_utf8(std::string_view s) {
  std::vector<uint32_t> cps;
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = 0;
    uint32_t cp = 0, min = 0;
    if (c < 0x80) { len = 1; cp = c; }
    else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
    bool ok = len > 0 && i + static_cast<std::size_t>(len) <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((d & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (d & 0x3F);
    }
    if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (!ok) {
      cps.push_back(0xFFFD);
      ++i;
    } else {
      cps.push_back(cp);
      i += static_cast<std::size_t>(len);
    }
  }
  return cps;
}

}  // namespace svg_detail

/// Text made safe for XML 1.0 character data and attribute values: & < > " ' escaped,
/// invalid UTF-8 and characters XML forbids (controls other than tab/newline, U+FFFE/F)
/// replaced by U+FFFD. `max_chars` > 0 shortens to that many characters plus "…".
inline std::string xml_escape(std::string_view text, std::size_t max_chars = 0) {
  auto cps = svg_detail::decode_utf8(text);
  bool cut = false;
  if (max_chars > 0 && cps.size() > max_chars) {
    cps.resize(max_chars);
    cut = true;
  }
  std::string out;
  out.reserve(text.size() + 8);
  for (uint32_t cp : cps) {
    switch (cp) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: {
        const bool allowed = cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
                             (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
        svg_detail::put_utf8(out, allowed ? cp : 0xFFFD);
      }
    }
  }
  if (cut) svg_detail::put_utf8(out, 0x2026);
  return out;
}

/// Number of characters (code points) of `text` as UTF-8, for layout estimates.
inline std::size_t display_length(std::string_view text) { return svg_detail::decode_utf8(text).size(); }

namespace svg_detail {

struct Rgb {
  double r, g, b;
};

/// The diverging scale at t in [-1, 1]: dark blue, light blue, near-white, light red, dark red.
inline Rgb diverging(double t) {
  static constexpr Rgb stops[] = {{5, 48, 97}, {67, 147, 195}, {247, 247, 247}, {214, 96, 77}, {103, 0, 31}};
  if (!std::isfinite(t)) return {128, 128, 128};
  t = std::clamp(t, -1.0, 1.0);
  const double x = (t + 1) * 2;  // 0..4
  const int k = std::min(3, static_cast<int>(x));
  const double f = x - k;
  const Rgb& a = stops[k];
  const Rgb& b = stops[k + 1];
  return {a.r + (b.r - a.r) * f, a.g + (b.g - a.g) * f, a.b + (b.b - a.b) * f};
}

inline std::string hex(const Rgb& c) {
  char buf[8];
  auto q = [](double v) { return static_cast<int>(std::lround(std::clamp(v, 0.0, 255.0))); };
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", q(c.r), q(c.g), q(c.b));
  return buf;
}

inline std::string num(double v, const char* format = "%.1f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

inline std::string value_text(double v) { return num(v, "%.4g"); }

}  // namespace svg_detail

/// Renders the two-panel heat map as an SVG document.
inline std::string render_svg(const HeatMap& m) {
  using namespace svg_detail;
  const std::size_t n = m.labels.size();
  const auto N = static_cast<double>(n);
  const double cell = std::clamp(520.0 / std::max(N, 1.0), 6.0, 30.0);
  const double font = std::clamp(cell * 0.7, 6.0, 12.0);
  constexpr std::size_t kMaxLabel = 16;
  std::vector<std::string> labels(n);
  std::size_t longest = 1;
  for (std::size_t i = 0; i < n; ++i) {
    labels[i] = xml_escape(m.labels[i], kMaxLabel);
    longest = std::max(longest, std::min(display_length(m.labels[i]), kMaxLabel + 1));
  }
  const double label_space = 8 + 0.62 * font * static_cast<double>(longest);
  const double grid = cell * N;
  const double margin = 20, gap = 50;
  // The legends need about 290 px; a panel title about 7.5 px a character.
  const double title_w = 7.5 * static_cast<double>(std::max(display_length(m.left_title), display_length(m.right_title)));
  const double panel_w = label_space + std::max({grid, 290.0, title_w});
  const double heading = 62;
  const double top = heading + 32 + label_space;  // panel titles, then rotated column labels
  const double legend_h = 70;
  const double width = std::max(margin * 2 + panel_w * 2 + gap, 640.0);
  const double height = top + grid + legend_h + margin;

  double lo = 0, hi = 0, scale = 0;
  bool any = false;
  for (double v : m.values)
    if (std::isfinite(v)) {
      lo = any ? std::min(lo, v) : v;
      hi = any ? std::max(hi, v) : v;
      any = true;
      scale = std::max(scale, std::abs(v));
    }

  std::string s;
  s.reserve(2048 + n * n * 260);
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + num(width) + "\" height=\"" +
       num(height) + "\" viewBox=\"0 0 " + num(width) + " " + num(height) +
       "\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\">\n";
  s += "<rect class=\"background\" x=\"0\" y=\"0\" width=\"" + num(width) + "\" height=\"" + num(height) +
       "\" fill=\"#ffffff\"/>\n";
  s += "<text x=\"" + num(margin) + "\" y=\"26\" font-size=\"16\" font-weight=\"bold\">" + xml_escape(m.title) +
       "</text>\n";
  s += "<text x=\"" + num(margin) + "\" y=\"46\" font-size=\"11\" fill=\"#444444\">" + xml_escape(m.subtitle) +
       "</text>\n";

  // One panel: title, rotated column labels, row labels, the n*n cells.
  auto panel = [&](double x0, const std::string& title, bool attribution) {
    const double gx = x0 + label_space;
    s += "<g class=\"panel " + std::string(attribution ? "attribution" : "mask") + "\">\n";
    s += "<text x=\"" + num(gx) + "\" y=\"" + num(heading + 10) + "\" font-size=\"13\" font-weight=\"bold\">" +
         xml_escape(title) + "</text>\n";
    s += "<text x=\"" + num(gx) + "\" y=\"" + num(heading + 25) +
         "\" font-size=\"10\" fill=\"#666666\">rows: queries i, columns: keys j</text>\n";
    for (std::size_t j = 0; j < n; ++j) {
      const double cx = gx + cell * (static_cast<double>(j) + 0.5) + font * 0.35;
      s += "<text x=\"" + num(cx) + "\" y=\"" + num(top - 4) + "\" font-size=\"" + num(font) +
           "\" transform=\"rotate(-90 " + num(cx) + " " + num(top - 4) + ")\">" + labels[j] + "</text>\n";
    }
    for (std::size_t i = 0; i < n; ++i) {
      const double cy = top + cell * (static_cast<double>(i) + 0.5) + font * 0.35;
      s += "<text x=\"" + num(gx - 4) + "\" y=\"" + num(cy) + "\" font-size=\"" + num(font) +
           "\" text-anchor=\"end\">" + labels[i] + "</text>\n";
    }
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        const std::size_t k = i * n + j;
        const double x = gx + cell * static_cast<double>(j), y = top + cell * static_cast<double>(i);
        const std::string pos = "x=\"" + num(x) + "\" y=\"" + num(y) + "\" width=\"" + num(cell) + "\" height=\"" +
                                num(cell) + "\"";
        const std::string where = labels[i] + " \xE2\x86\x92 " + labels[j] + " (" + std::to_string(i) + ", " +
                                  std::to_string(j) + ")";
        if (attribution) {
          const double v = m.values[k];
          const std::string fill = hex(diverging(scale > 0 ? v / scale : 0.0));
          s += "<rect class=\"cell attribution\" " + pos + " fill=\"" + fill + "\"><title>" + where + ": " +
               value_text(v) + "</title></rect>\n";
        } else {
          const bool dropped = !m.keep[k];
          const bool candidate = m.candidates[k] != 0;
          const char* cls = dropped ? "cell dropped" : candidate ? "cell candidate" : "cell kept";
          const char* fill = dropped ? "#2b2b2b" : candidate ? "#fdd88a" : "#ffffff";
          const char* state = dropped ? "dropped" : candidate ? "candidate, kept" : "kept";
          s += "<rect class=\"" + std::string(cls) + "\" " + pos + " fill=\"" + fill +
               "\" stroke=\"#c8c8c8\" stroke-width=\"0.5\"><title>" + where + ": " + state + "</title></rect>\n";
          if (dropped && cell >= 8) {  // a white cross on each dropped cell
            const double a = cell * 0.25;
            s += "<path d=\"M" + num(x + a) + " " + num(y + a) + "L" + num(x + cell - a) + " " + num(y + cell - a) +
                 "M" + num(x + cell - a) + " " + num(y + a) + "L" + num(x + a) + " " + num(y + cell - a) +
                 "\" stroke=\"#ffffff\" stroke-width=\"" + num(std::max(1.0, cell / 14), "%.2f") + "\"/>\n";
          }
        }
      }
    }
    // Frame around the grid.
    s += "<rect class=\"frame\" x=\"" + num(gx) + "\" y=\"" + num(top) + "\" width=\"" + num(grid) + "\" height=\"" +
         num(grid) + "\" fill=\"none\" stroke=\"#555555\" stroke-width=\"1\"/>\n";

    // Legend under the grid.
    const double ly = top + grid + 18;
    if (attribution) {
      const double bar_w = std::max(std::min(grid, 260.0), 160.0);
      constexpr int kSteps = 64;  // discrete steps: every renderer draws them alike
      for (int k = 0; k < kSteps; ++k)
        s += "<rect class=\"legend\" x=\"" + num(gx + bar_w * k / kSteps, "%.2f") + "\" y=\"" + num(ly) +
             "\" width=\"" + num(bar_w / kSteps + 0.3, "%.2f") + "\" height=\"12\" fill=\"" +
             hex(diverging((k + 0.5) / kSteps * 2 - 1)) + "\"/>\n";
      s += "<rect class=\"legend-frame\" x=\"" + num(gx) + "\" y=\"" + num(ly) + "\" width=\"" + num(bar_w) +
           "\" height=\"12\" fill=\"none\" stroke=\"#555555\" stroke-width=\"0.5\"/>\n";
      auto tick = [&](double fx, const std::string& text, const char* anchor) {
        s += "<text x=\"" + num(gx + bar_w * fx) + "\" y=\"" + num(ly + 25) + "\" font-size=\"10\" text-anchor=\"" +
             anchor + "\">" + text + "</text>\n";
      };
      tick(0, xml_escape("\xE2\x88\x92" + value_text(scale)), "start");
      tick(0.5, "0", "middle");
      tick(1, xml_escape("+" + value_text(scale)), "end");
      s += "<text x=\"" + num(gx) + "\" y=\"" + num(ly + 42) + "\" font-size=\"11\">min " + value_text(lo) +
           "   max " + value_text(hi) + "</text>\n";
    } else {
      double x = gx;
      auto swatch = [&](const char* fill, const std::string& text, bool cross) {
        s += "<rect class=\"legend\" x=\"" + num(x) + "\" y=\"" + num(ly) +
             "\" width=\"12\" height=\"12\" fill=\"" + fill + "\" stroke=\"#999999\" stroke-width=\"0.5\"/>\n";
        if (cross)
          s += "<path d=\"M" + num(x + 3) + " " + num(ly + 3) + "L" + num(x + 9) + " " + num(ly + 9) + "M" +
               num(x + 9) + " " + num(ly + 3) + "L" + num(x + 3) + " " + num(ly + 9) +
               "\" stroke=\"#ffffff\" stroke-width=\"1\"/>\n";
        s += "<text x=\"" + num(x + 16) + "\" y=\"" + num(ly + 10) + "\" font-size=\"11\">" + text + "</text>\n";
        x += 22 + 6.5 * static_cast<double>(text.size());
      };
      swatch("#ffffff", "kept", false);
      swatch("#fdd88a", "candidate, kept", false);
      swatch("#2b2b2b", "dropped", true);
      int64_t dropped = 0, candidates = 0;
      for (std::size_t k = 0; k < n * n; ++k) {
        dropped += !m.keep[k];
        candidates += m.candidates[k] != 0;
      }
      s += "<text x=\"" + num(gx) + "\" y=\"" + num(ly + 30) + "\" font-size=\"11\">" + std::to_string(candidates) +
           " candidates, " + std::to_string(dropped) + " dropped of " + std::to_string(n * n) + " cells</text>\n";
    }
    s += "</g>\n";
  };
  panel(margin, m.left_title, true);
  panel(margin + panel_w + gap, m.right_title, false);
  s += "</svg>\n";
  return s;
}

}  // namespace addrop_inspect
