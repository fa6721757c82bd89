//! The association graph of one LIID as an SVG picture: how the target's identities led to
//! what was intercepted. subscriber -> access addresses -> uploads = images -> VMs (and who
//! started them) -> their addresses -> sessions -> objects.
//!
//! Built from the case's association records (what the control plane and RADIUS said, each
//! with its time) and its sessions and objects. Laid out in columns by distance from the
//! identities the warrant names, in the order the case has them, so the same case draws the
//! same picture. Sessions and objects per node are capped ([`PER_NODE`]), with a count of the
//! rest: the picture shows the chain, the tables below it every session and object.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use serde_json::Value;

use super::{esc, text};

/// Sessions shown per address, objects per session.
const PER_NODE: usize = 8;
const BOX_W: usize = 210;
const BOX_H: usize = 28;
const COL: usize = 260;
const ROW: usize = 38;

#[derive(Default)]
pub(super) struct Graph {
    /// Node id -> label, in order of first appearance.
    nodes: Vec<(String, String)>,
    index: HashMap<String, usize>,
    /// (from, to, label).
    edges: Vec<(usize, usize, String)>,
}

impl Graph {
    fn node(&mut self, id: String, label: String) -> usize {
        if let Some(&i) = self.index.get(&id) {
            return i;
        }
        self.nodes.push((id.clone(), label));
        self.index.insert(id, self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    fn edge(&mut self, from: usize, to: usize, label: String) {
        if !self.edges.iter().any(|(f, t, _)| *f == from && *t == to) {
            self.edges.push((from, to, label));
        }
    }

    /// The graph of one LIID's records and objects.
    pub(super) fn of(iri: &[Value], objects: &[Value]) -> Graph {
        let mut g = Graph::default();
        let ip_of = |hostport: &str| {
            hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).trim_matches(['[', ']']).to_string()
        };
        for r in iri.iter().filter(|r| r["event"] == "association") {
            let d = &r["detail"];
            let at = text(&r["ts"]);
            match r["what"].as_str().unwrap_or("") {
                "access.start" => {
                    let sub = g.node(
                        format!("sub:{}", text(&d["subscriber"])),
                        format!("subscriber {}", text(&d["subscriber"])),
                    );
                    let ip = g.node(format!("ip:{}", text(&d["ip"])), format!("address {}", text(&d["ip"])));
                    g.edge(sub, ip, format!("access from {at}"));
                }
                "image.create" => {
                    let img = g.node(
                        format!("img:{}", text(&d["image"])),
                        format!("image {} {}", text(&d["image"]), text(&d["name"])),
                    );
                    let up = &d["equals_intercepted_upload"];
                    if let Some(id) = up["object"].as_u64() {
                        let obj = g.node(format!("obj:{id}"), format!("upload {}", text(&up["name"])));
                        if let Some(orig) = up["flow"].as_str().and_then(|f| f.split_whitespace().nth(1)) {
                            let ip = g.node(format!("ip:{}", ip_of(orig)), format!("address {}", ip_of(orig)));
                            g.edge(ip, obj, "uploaded".into());
                        }
                        g.edge(obj, img, format!("registered {at}"));
                    } else if let Some(owner) = d["owner"].as_str() {
                        let sub = g.node(format!("sub:{owner}"), format!("subscriber {owner}"));
                        g.edge(sub, img, format!("owns, {at}"));
                    }
                }
                "instance.start" => {
                    let img = g.node(format!("img:{}", text(&d["image"])), format!("image {}", text(&d["image"])));
                    let vm = g.node(
                        format!("vm:{}", text(&d["instance"])),
                        format!("VM {} (started by {})", text(&d["instance"]), text(&d["owner"])),
                    );
                    g.edge(img, vm, format!("started {at}"));
                    for port in d["ports"].as_array().into_iter().flatten() {
                        for ip in port["ips"].as_array().into_iter().flatten() {
                            let n = g.node(format!("ip:{}", text(ip)), format!("address {}", text(ip)));
                            g.edge(vm, n, "has".into());
                        }
                    }
                }
                _ => {}
            }
        }
        // Each address's sessions (by their first record), each session's objects.
        let mut sessions: BTreeMap<u64, &Value> = BTreeMap::new();
        for r in iri.iter().filter(|r| r["event"] == "session-begin") {
            if let Some(cin) = r["cin"].as_u64() {
                sessions.entry(cin).or_insert(r);
            }
        }
        let mut shown: HashMap<usize, usize> = HashMap::new();
        let mut more: BTreeMap<usize, usize> = BTreeMap::new();
        for (cin, r) in &sessions {
            let f = &r["flow"];
            let (orig, resp) = (ip_of(&text(&f["orig"])), ip_of(&text(&f["resp"])));
            let Some(&ip) = g.index.get(&format!("ip:{orig}")).or_else(|| g.index.get(&format!("ip:{resp}"))) else {
                continue;
            };
            let n = shown.entry(ip).or_default();
            if *n >= PER_NODE {
                *more.entry(ip).or_default() += 1;
                continue;
            }
            *n += 1;
            let s = g.node(format!("cin:{cin}"), format!("CIN {cin} {} → {}", text(&f["proto"]), text(&f["resp"])));
            g.edge(ip, s, String::new());
        }
        for (ip, n) in more {
            let m = g.node(format!("more:{ip}"), format!("+ {n} more sessions"));
            g.edge(ip, m, String::new());
        }
        let mut per_session: HashMap<usize, usize> = HashMap::new();
        for o in objects {
            let (Some(cin), Some(id)) = (o["cin"].as_u64(), o["id"].as_u64()) else { continue };
            let Some(&s) = g.index.get(&format!("cin:{cin}")) else { continue };
            let n = per_session.entry(s).or_default();
            if *n >= PER_NODE {
                continue;
            }
            *n += 1;
            let name = text(&o["name"]);
            let obj = g.node(
                format!("obj:{id}"),
                format!("{} {}", text(&o["kind"]), if name.is_empty() { format!("#{id}") } else { name }),
            );
            g.edge(s, obj, String::new());
        }
        g
    }

    /// The picture, or nothing when there is no association to draw.
    pub(super) fn svg(&self, id: &str) -> String {
        if self.nodes.is_empty() {
            return String::new();
        }
        // Columns: distance from the roots (nodes nothing points to), first come first placed.
        let mut has_parent = vec![false; self.nodes.len()];
        for (_, t, _) in &self.edges {
            has_parent[*t] = true;
        }
        let mut layer: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut queue: VecDeque<usize> = (0..self.nodes.len()).filter(|&i| !has_parent[i]).collect();
        for &i in &queue {
            layer[i] = Some(0);
        }
        while let Some(i) = queue.pop_front() {
            for (f, t, _) in &self.edges {
                if *f == i && layer[*t].is_none() {
                    layer[*t] = Some(layer[i].unwrap_or(0) + 1);
                    queue.push_back(*t);
                }
            }
        }
        // A cycle with no root: its nodes go in the first column.
        let layer: Vec<usize> = layer.into_iter().map(|l| l.unwrap_or(0)).collect();
        let mut rows: BTreeMap<usize, usize> = BTreeMap::new();
        let mut at = vec![(0usize, 0usize); self.nodes.len()];
        for (i, &l) in layer.iter().enumerate() {
            let r = rows.entry(l).or_default();
            at[i] = (10 + l * COL, 10 + *r * ROW);
            *r += 1;
        }
        let width = 20 + (layer.iter().max().unwrap_or(&0) + 1) * COL;
        let height = 20 + rows.values().max().unwrap_or(&1) * ROW;
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg id=\"graph-{}\" class=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">",
            esc(id)
        );
        for (f, t, label) in &self.edges {
            let ((fx, fy), (tx, ty)) = (at[*f], at[*t]);
            let _ = write!(
                s,
                "<line data-from=\"{}\" data-to=\"{}\" x1=\"{}\" y1=\"{}\" x2=\"{tx}\" y2=\"{}\" stroke=\"#889\"><title>{}</title></line>",
                esc(&self.nodes[*f].0),
                esc(&self.nodes[*t].0),
                fx + BOX_W,
                fy + BOX_H / 2,
                ty + BOX_H / 2,
                esc(label)
            );
        }
        for (i, (nid, label)) in self.nodes.iter().enumerate() {
            let (x, y) = at[i];
            let kind = nid.split(':').next().unwrap_or("");
            let shown: String = label.chars().take(34).collect();
            let _ = write!(
                s,
                "<g class=\"node n-{kind}\" data-id=\"{}\"><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"4\"/>\
                 <text x=\"{}\" y=\"{}\">{}</text></g>",
                esc(nid),
                esc(label),
                x + 6,
                y + 18,
                esc(&shown)
            );
        }
        s.push_str("</svg>");
        s
    }
}
