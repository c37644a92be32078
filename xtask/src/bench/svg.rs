//! `bench/instructions.svg`: instructions per call against range size.

use super::*;

// ---------------------------------------------------------------- plot

/// A plotted line: title, colour, dashed, (size, instructions) points.
pub type Series = (String, &'static str, bool, Vec<(usize, u64)>);

pub const COLORS: [&str; 5] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b"];

/// Log-log plot of instructions per call against range size (aligned
/// starts), one panel per CPU model, the minimum dashed.
pub fn svg(report: &Report) -> String {
    let (pw, ph, ml, mt, mb) = (420.0, 300.0, 60.0, 40.0, 50.0);
    let width = ml + (pw + ml) * report.cpus.len() as f64 + 320.0;
    let height = mt + ph + mb;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let (xmin, xmax) = (4f64.log10(), ((1u64 << 20) as f64).log10());
    let (ymin, ymax) = (0.0, 6.0); // 1 .. 1,000,000 instructions
    for (p, c) in report.cpus.iter().enumerate() {
        let x0 = ml + p as f64 * (pw + ml);
        let xs = |size: usize| x0 + ((size as f64).log10() - xmin) / (xmax - xmin) * pw;
        let ys = |n: u64| mt + ph - (((n.max(1)) as f64).log10() - ymin) / (ymax - ymin) * ph;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">-cpu {} (D {} B, I {} B lines)</text>",
            x0 + pw / 2.0,
            mt - 15.0,
            c.cpu,
            c.lines.0,
            c.lines.1
        );
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>"
        );
        for e in 0..=6 {
            let y = ys(10u64.pow(e));
            let _ = writeln!(
                s,
                "<line x1=\"{x0}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">1e{e}</text>",
                x0 + pw,
                x0 - 4.0,
                y + 4.0
            );
        }
        for &size in &SIZES {
            let x = xs(size);
            let _ = writeln!(
                s,
                "<line x1=\"{x}\" y1=\"{mt}\" x2=\"{x}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                mt + ph,
                mt + ph + 14.0,
                size_name(size)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">range size (aligned start)</text>",
            x0 + pw / 2.0,
            mt + ph + 34.0
        );
        let rows: Vec<&Row> = c.singles.iter().filter(|r| r.offset == 0).collect();
        let mut series: Vec<Series> = vec![(
            "architectural minimum".to_string(),
            "#000",
            true,
            rows.iter().map(|r| (r.size, r.minimum.insns)).collect(),
        )];
        for (i, (name, title)) in IMPLS.iter().enumerate() {
            let pts = rows
                .iter()
                .filter_map(|r| {
                    r.impls
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, k)| (r.size, k.insns))
                })
                .collect();
            series.push((title.replace('`', ""), COLORS[i], false, pts));
        }
        for (_, color, dashed, pts) in &series {
            let d: Vec<String> = pts
                .iter()
                .map(|&(size, n)| format!("{:.1},{:.1}", xs(size), ys(n)))
                .collect();
            let _ =
                writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{}\"{}/>",
                d.join(" "),
                if *dashed { 1.5 } else { 2.0 },
                if *dashed { " stroke-dasharray=\"6,4\"" } else { "" }
            );
            for &(size, n) in pts {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
                    xs(size),
                    ys(n)
                );
            }
        }
        if p == report.cpus.len() - 1 {
            let lx = x0 + pw + 15.0;
            for (i, (title, color, dashed, _)) in series.iter().enumerate() {
                let y = mt + 10.0 + i as f64 * 18.0;
                let _ = writeln!(
                    s,
                    "<line x1=\"{lx}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"2\"{}/><text x=\"{}\" y=\"{}\">{}</text>",
                    lx + 20.0,
                    if *dashed { " stroke-dasharray=\"6,4\"" } else { "" },
                    lx + 25.0,
                    y + 4.0,
                    title
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">instructions per call</text>",
        mt + ph / 2.0,
        mt + ph / 2.0
    );
    s.push_str("</svg>\n");
    s
}
