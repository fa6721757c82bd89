//! `tapir report`: a case as one self-contained HTML page an analyst can read.
//!
//! Built from the case files alone (`MANIFEST.json` and its signature, each LIID's `iri.jsonl`
//! and `objects.jsonl`), so the same case always makes the same bytes: no clock, no random,
//! every list in a fixed order. The page needs nothing but a browser: styles and the little
//! script that filters the timeline and sorts the tables are inline, nothing is fetched, and
//! object bytes are linked by their path relative to the page.
//!
//! Everything in a case came off the wire or from a target: every string is escaped
//! ([`esc`]) before it is written, attribute or text, so a hostile mail subject or file name is
//! shown as the text it is, never markup or script.
//!
//! Per LIID the page shows: the warrant (window, activation), the identities and addresses the
//! target had and why (association records with their provenance chains), the association
//! graph as a picture ([`graph`]: subscriber, addresses, uploads, images, VMs and who started
//! them, their sessions and objects), one time-sorted
//! timeline of every record with a filter by kind, the sessions (peers, protocol, times,
//! packets and bytes each way) and the objects (name, kind, format verdict, digests, size, a
//! link to the bytes; pictures as thumbnails, audio and video playable).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use mail_parser::MimeHeaders;
use serde_json::Value;

mod graph;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: not a case directory (no MANIFEST.json) nor an LEMF's (no report.json)", .0.display())]
    NotACase(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What `tapir verify` says of the case, shown at the top; or, for what `tapir lemf` received,
/// its account of the streams.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every listed file's digest holds under a valid signature, no file is unlisted.
    Verified {
        files: usize,
        signer: String,
        incomplete: Option<String>,
        /// The digests checked (path -> SHA-256): a LIID directory's own check takes them.
        digests: HashMap<String, String>,
    },
    Failed(String),
    /// An LEMF's directory (`report.json`): what arrived, and what is missing or repeated.
    Received {
        pdus: u64,
        streams: usize,
        gaps: usize,
        duplicates: u64,
        undecodable: u64,
        integrity_failed: u64,
    },
}

/// The verdict on `dir`: its signed manifest checked as `tapir verify` does, or, for an LEMF's
/// directory, its receiving report summed up.
pub fn verdict_of(dir: &Path) -> Verdict {
    let lemf = dir.join("report.json");
    if !dir.join("MANIFEST.json").exists() && lemf.is_file() {
        let r: Value = std::fs::read(&lemf).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
        let streams = r["streams"].as_object();
        let sum = |k: &str| streams.map_or(0, |s| s.values().map(|v| v[k].as_u64().unwrap_or(0)).sum());
        let gaps = streams.map_or(0, |s| s.values().map(|v| v["gaps"].as_array().map_or(0, Vec::len)).sum());
        return Verdict::Received {
            pdus: sum("pdus"),
            streams: streams.map_or(0, |s| s.len()),
            gaps,
            duplicates: sum("duplicates"),
            undecodable: r["undecodable"].as_u64().unwrap_or(0),
            integrity_failed: r["integrity"]["hash_failed"].as_u64().unwrap_or(0)
                + r["integrity"]["signature_failed"].as_u64().unwrap_or(0),
        };
    }
    checked(crate::deliver::manifest::verify(dir, None))
}

/// A manifest check's outcome as the page says it.
fn checked(r: Result<crate::deliver::manifest::Verified, crate::deliver::manifest::ManifestError>) -> Verdict {
    match r {
        Ok(v) => Verdict::Verified { files: v.files, signer: v.signer, incomplete: v.incomplete, digests: v.digests },
        Err(e) => Verdict::Failed(e.to_string()),
    }
}

/// HTML-escapes `s` for text and for attribute values in double quotes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as short text: strings bare, the rest as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A record time for reading: `2026-11-22 17:08:23.291785` (the case's full RFC 3339 value is
/// the cell's title).
fn when(v: &Value) -> String {
    let t = text(v);
    let t = t.strip_suffix('Z').unwrap_or(&t);
    let t = match t.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{}", frac.get(..6).unwrap_or(frac)),
        None => t.to_string(),
    };
    t.replacen('T', " ", 1)
}

/// A time cell: readable text, the exact value as its title and sort key.
fn time_cell(v: &Value) -> String {
    let t = esc(&text(v));
    format!("<td class=\"t\" title=\"{t}\" data-v=\"{t}\">{}</td>", esc(&when(v)))
}

/// An object of fields as `key=value` pairs (nested values as compact JSON).
fn pairs(v: &Value, skip: &[&str]) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .filter(|(k, v)| !skip.contains(&k.as_str()) && !v.is_null())
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect::<Vec<_>>()
            .join("  "),
        v => text(v),
    }
}

/// One LIID's records, as the case holds them.
struct Liid {
    name: String,
    iri: Vec<Value>,
    objects: Vec<Value>,
    integrity: Integrity,
}

/// What says this LIID's records are whole and unchanged.
enum Integrity {
    /// A recorded case: the LIID directory's own signed manifest (it can be handed over alone),
    /// checked as `tapir verify` does.
    Recorded(Verdict),
    /// What an LEMF received: its sequence-number streams for this LIID, in channel, CIN and
    /// kind order.
    Received(Vec<Delivered>),
}

/// One sequence-number stream an LEMF received (`report.json`'s `streams`: channel, CIN,
/// kind, PDUs, gaps, repeats), and what is wrong with it: `None` when it is whole.
struct Delivered {
    stream: Value,
    fault: Option<String>,
}

fn read_lines(path: &Path) -> Result<Vec<Value>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ReportError::Io { path: path.to_path_buf(), source }),
    };
    // A line that does not parse is shown as it is, not dropped: the page hides nothing.
    Ok(text
        .lines()
        .map(|l| serde_json::from_str(l).map(as_case_record).unwrap_or_else(|_| Value::String(l.to_string())))
        .collect())
}

/// The case record inside a line of an LEMF's `iri.jsonl` (one decoded HI2 PDU: tapir's
/// national parameters carry the record whole), or the line as it is. An HI1 notification is
/// the warrant record it stands for (its operation, at its PS-PDU header's time; HI1 carries no
/// window); another PDU without a case record (an EmailIRI) is kept as a `hi2` record of its
/// time and CIN.
fn as_case_record(line: Value) -> Value {
    if line.get("event").is_some() {
        return line;
    }
    if let Some(op) = line.get("hI1-Operation").and_then(Value::as_object).and_then(|m| m.keys().next()) {
        let op = match op.as_str() {
            "liActivated" => "activated",
            "liDeactivated" => "deactivated",
            "liModified" => "modified",
            other => other,
        };
        return serde_json::json!({"event": "warrant", "op": op, "ts": header_time(&line), "via": "HI1"});
    }
    if line.get("iri").is_none() {
        return line;
    }
    fn find(v: &Value) -> Option<&Value> {
        match v {
            Value::Object(m) => m.get("caseRecord").or_else(|| m.values().find_map(find)),
            Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    match find(&line["iri"]) {
        Some(r) => r.clone(),
        None => serde_json::json!({"event": "hi2", "ts": header_time(&line), "cin": line["cin"], "pdu": line["iri"]}),
    }
}

/// The time in a decoded PDU's PS-PDU header, as the case writes times; null without one.
fn header_time(line: &Value) -> Value {
    crate::lemf::core::header_time(line).map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

/// A LIID directory's own verdict. When the root verified, its digests stand for the same
/// files below (no second hashing of a large capture).
fn liid_verdict(case: &Path, name: &str, root: &Verdict) -> Verdict {
    let prefix = format!("{name}/");
    let known = match root {
        Verdict::Verified { digests, .. } => {
            digests.iter().filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone()))).collect()
        }
        _ => HashMap::new(),
    };
    checked(crate::deliver::manifest::verify_known(&case.join(name), None, &known))
}

/// An object line as the case writer writes it. An LEMF's line (a mail reassembled from HI3:
/// `kind` "email", no id or path, `ts`) is given the case's names: its bytes are at
/// `objects/<sha256>` there too.
fn as_case_object((i, mut o): (usize, Value)) -> Value {
    if o["kind"] == "email" && o.get("path").is_none() {
        let sha = text(&o["sha256"]);
        o["kind"] = "mail".into();
        o["path"] = format!("objects/{sha}").into();
        o["id"] = (i + 1).into();
        o["first_seen"] = o["ts"].clone();
        if o["truncated"] == true {
            o["format"]["reason"] = "cut short at the LEMF's object limit".into();
        }
    }
    o
}

fn read_case(case: &Path, root: &Verdict) -> Result<Vec<Liid>, ReportError> {
    if !case.join("MANIFEST.json").is_file() && !case.join("report.json").is_file() {
        return Err(ReportError::NotACase(case.to_path_buf()));
    }
    let io = |source| ReportError::Io { path: case.to_path_buf(), source };
    let mut names: Vec<String> = std::fs::read_dir(case)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("iri.jsonl").is_file() || e.path().join("objects.jsonl").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    let lemf: Option<Value> = (!case.join("MANIFEST.json").is_file())
        .then(|| std::fs::read(case.join("report.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()))
        .flatten();
    names
        .into_iter()
        .map(|name| {
            let dir = case.join(&name);
            let integrity = match &lemf {
                // The LEMF names a LIID's directory by `liid_dir`; its report keeps the LIID.
                Some(r) => {
                    let mine = |v: &&Value| crate::lemf::case::liid_dir(&text(&v["liid"])) == name;
                    let failures: Vec<&Value> =
                        r["integrity"]["failures"].as_array().into_iter().flatten().filter(mine).collect();
                    let mut streams: Vec<Delivered> = r["streams"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(_, v)| v)
                        .filter(mine)
                        .map(|s| Delivered { fault: stream_fault(s, &failures), stream: s.clone() })
                        .collect();
                    streams.sort_by_key(|d| {
                        let s = &d.stream;
                        (text(&s["channel"]), s["cin"].as_u64(), text(&s["kind"]))
                    });
                    Integrity::Received(streams)
                }
                None => Integrity::Recorded(liid_verdict(case, &name, root)),
            };
            Ok(Liid {
                iri: read_lines(&dir.join("iri.jsonl"))?,
                objects: read_lines(&dir.join("objects.jsonl"))?.into_iter().enumerate().map(as_case_object).collect(),
                integrity,
                name,
            })
        })
        .collect()
}

/// `to` as seen from directory `from`: a relative path when both are on one tree.
fn relative(from: &Path, to: &Path) -> String {
    let (Ok(from), Ok(to)) = (from.canonicalize(), to.canonicalize()) else { return to.display().to_string() };
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut p = PathBuf::new();
    for _ in common..f.len() {
        p.push("..");
    }
    for c in &t[common..] {
        p.push(c);
    }
    p.display().to_string()
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222}\
h1{font-size:1.5em}h2{border-bottom:2px solid #446;margin-top:2em}h3{margin-top:1.5em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;text-align:left;max-width:70em;overflow-wrap:anywhere}\
th{background:#eef;cursor:pointer}td.n{text-align:right}td.t{white-space:nowrap}code{font-size:12px}\
.ok{background:#dfd;border:1px solid #6a6;padding:.5em}.bad{background:#fdd;border:1px solid #a66;padding:.5em}\
.chain{color:#555;font-size:12px}img.thumb{max-width:160px;max-height:120px}\
tr.k-object td:first-child{border-left:4px solid #b70}tr.k-session-begin td:first-child,tr.k-session-end td:first-child{border-left:4px solid #37a}\
tr.k-association td:first-child{border-left:4px solid #7a3}tr.k-warrant td:first-child{border-left:4px solid #a37}\
tr.k-vmi td:first-child{border-left:4px solid #a0a}div.scroll{overflow-x:auto}table.paged tr.more{display:none}tr.gap td{background:#fee}\
svg.graph rect{fill:#f4f4fb;stroke:#668}svg.graph .n-sub rect{fill:#fde}svg.graph .n-ip rect{fill:#dfd}\
svg.graph .n-img rect{fill:#ffd}svg.graph .n-vm rect{fill:#def}svg.graph .n-obj rect{fill:#fed}";

/// Filters the timeline by kind (also from the address: `#hide=object,http` opens the page
/// with those kinds hidden), shows a long table's kept-back rows, sorts a table by a clicked
/// header (showing all its rows), and writes beside each player the duration the browser
/// found in the rebuilt media and beside each picture its size in pixels (or that it could
/// not): nothing else runs.
const SCRIPT: &str = "document.querySelectorAll('video,audio').forEach(function(m){\
function say(t,c){var s=m.parentNode.querySelector('span.dur');s.textContent=t;s.className='dur '+c;}\
function meta(){say(m.duration.toFixed(2)+' s','played');}\
if(m.readyState>=1){meta();}else{m.addEventListener('loadedmetadata',meta);}\
m.addEventListener('error',function(){say('the browser cannot play it','bad');});});\
document.querySelectorAll('img.thumb').forEach(function(i){var s=i.closest('td').querySelector('span.dim');\
function size(){s.textContent=i.naturalWidth+' x '+i.naturalHeight+' px';s.className='dim shown';}\
if(i.complete&&i.naturalWidth){size();}else{i.addEventListener('load',size);}\
i.addEventListener('error',function(){s.textContent='the browser cannot show it';s.className='dim bad';});});\
document.querySelectorAll('button.all').forEach(function(b){b.addEventListener('click',function(){\
document.getElementById(b.dataset.table).classList.remove('paged');b.remove();});});\
function show(b){var t=document.getElementById(b.dataset.table);\
t.querySelectorAll('tr[data-kind=\"'+b.value+'\"]').forEach(function(r){r.hidden=!b.checked;});}\
var hide=(location.hash.match(/hide=([^&]*)/)||[,''])[1].split(',');\
document.querySelectorAll('input.kind').forEach(function(b){if(hide.indexOf(b.value)>=0){b.checked=false;show(b);}\
b.addEventListener('change',function(){show(b);});});\
document.querySelectorAll('table.sortable th').forEach(function(h,i){h.addEventListener('click',function(){\
var tb=h.closest('table').tBodies[0];h.closest('table').classList.remove('paged');var rows=Array.from(tb.rows);var asc=h.dataset.asc!=='1';h.dataset.asc=asc?'1':'0';\
rows.sort(function(a,b){var x=a.cells[h.cellIndex].dataset.v||a.cells[h.cellIndex].textContent,y=b.cells[h.cellIndex].dataset.v||b.cells[h.cellIndex].textContent;\
var nx=parseFloat(x),ny=parseFloat(y);var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});rows.forEach(function(r){tb.appendChild(r);});});});";

/// Writes the report of `case`, with `verdict` at the top, for a page saved in `out_dir`.
pub fn render(case: &Path, verdict: &Verdict, out_dir: &Path) -> Result<String, ReportError> {
    let liids = read_case(case, verdict)?;
    let base = relative(out_dir, case);
    let title = case.file_name().and_then(|n| n.to_str()).unwrap_or("case");
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
         <title>Case {}</title><style>{STYLE}</style></head><body>\n<h1>Case {}</h1>\n",
        esc(title),
        esc(title)
    );
    match verdict {
        Verdict::Verified { files, signer, incomplete, .. } => {
            let _ = writeln!(
                h,
                "<p class=\"ok\" id=\"verdict\">Verified: {files} files, every digest as signed by {}.{}</p>",
                esc(signer),
                incomplete.as_ref().map(|w| format!(" <b>INCOMPLETE:</b> {}", esc(w))).unwrap_or_default()
            );
        }
        Verdict::Failed(why) => {
            let _ = writeln!(h, "<p class=\"bad\" id=\"verdict\">NOT VERIFIED: {}</p>", esc(why));
        }
        Verdict::Received { pdus, streams, gaps, duplicates, undecodable, integrity_failed } => {
            let whole = *gaps == 0 && *undecodable == 0 && *integrity_failed == 0;
            let _ = writeln!(
                h,
                "<p class=\"{}\" id=\"verdict\">Received by the LEMF: {pdus} PDUs in {streams} streams; \
                 {gaps} gaps, {duplicates} repeated, {undecodable} undecodable, {integrity_failed} integrity checks failed.</p>",
                if whole { "ok" } else { "bad" }
            );
        }
    }
    h.push_str("<nav><ul>");
    for l in &liids {
        let _ = write!(h, "<li><a href=\"#{0}\">{0}</a></li>", esc(&l.name));
    }
    h.push_str("</ul></nav>\n");
    for l in &liids {
        liid_section(&mut h, l, &base, case);
    }
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body></html>\n");
    Ok(h)
}

fn liid_section(h: &mut String, l: &Liid, base: &str, case: &Path) {
    let id = esc(&l.name);
    let _ = writeln!(h, "<section id=\"{id}\"><h2>LIID {id}</h2>");
    integrity(h, l);
    warrant(h, l);
    held(h, l);
    identities(h, l);
    let svg = graph::Graph::of(&l.iri, &l.objects).svg(&l.name);
    if !svg.is_empty() {
        let _ = writeln!(h, "<h3>Association graph</h3><div class=\"scroll\">{svg}</div>");
    }
    findings(h, l);
    timeline(h, l);
    sessions(h, l);
    objects(h, l, base, case);
    h.push_str("</section>\n");
}

/// The LIID's own verdict: its directory's manifest, or each stream the LEMF received.
fn integrity(h: &mut String, l: &Liid) {
    let id = esc(&l.name);
    match &l.integrity {
        Integrity::Recorded(Verdict::Verified { files, signer, .. }) => {
            let _ = writeln!(
                h,
                "<p class=\"ok\" id=\"integrity-{id}\">This LIID's directory verifies on its own: {files} files, as signed by {}.</p>",
                esc(signer)
            );
        }
        Integrity::Recorded(v) => {
            let why = match v {
                Verdict::Failed(why) => why.clone(),
                _ => "no manifest of its own".into(),
            };
            let _ = writeln!(
                h,
                "<p class=\"bad\" id=\"integrity-{id}\">This LIID's directory does NOT verify: {}</p>",
                esc(&why)
            );
        }
        Integrity::Received(streams) => {
            // The table is long (a stream per CIN and kind): folded when every stream is whole.
            let mut rows = String::new();
            let n = streams.len();
            let bad = streams.iter().filter(|d| d.fault.is_some()).count();
            for Delivered { stream: s, fault } in streams {
                let _ = write!(
                    rows,
                    "<tr class=\"{}\"><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td>\
                     <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    if fault.is_some() { "gap" } else { "" },
                    esc(&text(&s["channel"])),
                    esc(&text(&s["cin"])),
                    esc(&text(&s["kind"])),
                    esc(&text(&s["pdus"])),
                    esc(&gap_ranges(&s["gaps"])),
                    esc(&text(&s["duplicates"])),
                    esc(&text(&s["cin_resets"])),
                    esc(fault.as_deref().unwrap_or("whole"))
                );
            }
            let _ = writeln!(
                h,
                "<h3>Delivery</h3><details{}><summary id=\"delivery-summary-{id}\" class=\"{}\">{n} sequence-number streams: {}</summary>\
                 <table id=\"delivery-{id}\" class=\"sortable\"><thead><tr><th>channel</th><th>CIN</th>\
                 <th>kind</th><th>PDUs</th><th>gaps</th><th>repeated</th><th>numbering restarts</th><th>verdict</th></tr></thead>\
                 <tbody>{rows}</tbody></table></details>",
                if bad > 0 { " open" } else { "" },
                if bad > 0 { "bad" } else { "ok" },
                if bad > 0 { format!("{bad} not whole") } else { "all whole".to_string() }
            );
        }
    }
}

/// What is wrong with one stream the LEMF received: the integrity checks that failed over it
/// (a failed check condemns the PDUs it covers and its own stream), or the PDUs missing;
/// `None` when it is whole.
fn stream_fault(s: &Value, failures: &[&Value]) -> Option<String> {
    let failed: Vec<String> = failures
        .iter()
        .filter(|f| {
            let dt = text(&f["data_type"]);
            f["cin"] == s["cin"]
                && f["channel"] == s["channel"]
                && (s["kind"] == dt.as_str() || s["kind"] == format!("integrity-{dt}"))
        })
        .map(|f| format!("{} check failed: {}", text(&f["check_type"]), text(&f["reason"])))
        .collect();
    let gaps = gap_ranges(&s["gaps"]);
    if !failed.is_empty() {
        Some(failed.join("; "))
    } else if !gaps.is_empty() {
        Some(format!("PDUs missing: {gaps}"))
    } else {
        None
    }
}

/// The CINs whose delivered streams are not whole: their records and sessions are marked
/// where the analyst reads them, not only in the delivery table.
fn undelivered(l: &Liid) -> std::collections::BTreeSet<u64> {
    match &l.integrity {
        Integrity::Received(streams) => {
            streams.iter().filter(|d| d.fault.is_some()).filter_map(|d| d.stream["cin"].as_u64()).collect()
        }
        Integrity::Recorded(_) => Default::default(),
    }
}

/// Sequence-number holes `[[first, last], ...]` as text (`4-5, 9`).
fn gap_ranges(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| {
            let (a, b) = (g.get(0)?.as_u64()?, g.get(1)?.as_u64()?);
            Some(if a == b { a.to_string() } else { format!("{a}-{b}") })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn warrant(h: &mut String, l: &Liid) {
    // The case keeps a warrant's window, not its target list: the targets are named as the
    // records' provenance names them (what each record was intercepted for).
    let targets: std::collections::BTreeSet<String> =
        l.iri.iter().map(|r| text(&r["provenance"]["target"])).filter(|t| !t.is_empty() && t != "warrant").collect();
    let _ = write!(
        h,
        "<h3>Warrant</h3><p id=\"targets-{}\">Targets, as the records name them: {}</p>",
        esc(&l.name),
        if targets.is_empty() {
            "none in these records".to_string()
        } else {
            esc(&targets.into_iter().collect::<Vec<_>>().join(", "))
        }
    );
    h.push_str("<table><tr><th>time</th><th>what</th><th>window</th></tr>");
    for r in l.iri.iter().filter(|r| r["event"] == "warrant") {
        let window = if r["start"].is_null() && r["via"] == "HI1" {
            "not carried by HI1".to_string()
        } else {
            format!("{} to {}", when(&r["start"]), when(&r["end"]))
        };
        let _ = write!(h, "<tr>{}<td>{}</td><td>{}</td></tr>", time_cell(&r["ts"]), esc(&text(&r["op"])), esc(&window));
    }
    h.push_str("</table>\n");
}

/// One row of [`held`]: what the target had, from when to when, and why.
struct Held<'a> {
    what: String,
    from: &'a Value,
    until: Option<&'a Value>,
    by: &'a Value,
}

/// The time each address, VM, image and access session belonged to the target: a packet
/// selector from the record that added it to the one that removed it; an entity (`vm:`,
/// `image:`, a subscriber's session) from its first association record to its stop or delete.
/// Open ends run to the end of the case.
fn held(h: &mut String, l: &Liid) {
    let assoc: Vec<&Value> = l.iri.iter().filter(|r| r["event"] == "association").collect();
    if assoc.is_empty() {
        return;
    }
    let mut rows: Vec<Held> = Vec::new();
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut entities: BTreeMap<String, usize> = BTreeMap::new();
    for r in &assoc {
        for s in r["selectors_added"].as_array().into_iter().flatten() {
            let what = format!("selector {}", text(s));
            open.entry(what.clone()).or_insert_with(|| {
                rows.push(Held { what, from: &r["ts"], until: None, by: r });
                rows.len() - 1
            });
        }
        for s in r["selectors_removed"].as_array().into_iter().flatten() {
            if let Some(i) = open.remove(&format!("selector {}", text(s))) {
                rows[i].until = Some(&r["ts"]);
            }
        }
        let entity = text(&r["provenance"]["selector"]);
        // An access session is named by its address, already a selector's row.
        if entity.is_empty() || rows.iter().any(|h| h.what.strip_prefix("selector ") == Some(entity.as_str())) {
            continue;
        }
        let i = *entities.entry(entity.clone()).or_insert_with(|| {
            rows.push(Held { what: entity, from: &r["ts"], until: None, by: r });
            rows.len() - 1
        });
        let what = text(&r["what"]);
        if what.ends_with(".stop") || what.ends_with(".delete") {
            rows[i].until = Some(&r["ts"]);
        }
    }
    let _ = write!(
        h,
        "<h3>What the target had, and when</h3><table id=\"held-{}\" class=\"sortable\"><thead><tr><th>what</th>\
         <th>from</th><th>until</th><th>because of</th><th>why (provenance)</th></tr></thead><tbody>",
        esc(&l.name)
    );
    for r in &rows {
        let until = match r.until {
            Some(t) => time_cell(t),
            None => "<td class=\"t\">end of the case</td>".to_string(),
        };
        let _ = write!(
            h,
            "<tr><td class=\"t\">{}</td>{}{until}<td>{} {}</td><td class=\"chain\">{}</td></tr>",
            esc(&r.what),
            time_cell(r.from),
            esc(&text(&r.by["what"])),
            esc(&pairs(&r.by["detail"], &[])),
            chain(&r.by["provenance"])
        );
    }
    h.push_str("</tbody></table>\n");
}

/// What the target was known by, and since when, in the provenance chain's own words.
fn identities(h: &mut String, l: &Liid) {
    h.push_str("<h3>Association records</h3><table><tr><th>time</th><th>what</th><th>detail</th><th>selectors</th><th>why (provenance)</th></tr>");
    for r in l.iri.iter().filter(|r| r["event"] == "association") {
        let detail = pairs(&r["detail"], &[]);
        let sel =
            |k: &str| r[k].as_array().map(|a| a.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default();
        let selectors = [("+", sel("selectors_added")), ("-", sel("selectors_removed"))]
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(sign, s)| format!("{sign} {s}"))
            .collect::<Vec<_>>()
            .join("; ");
        let _ = write!(
            h,
            "<tr>{}<td>{}</td><td>{}</td><td>{}</td><td class=\"chain\">{}</td></tr>",
            time_cell(&r["ts"]),
            esc(&text(&r["what"])),
            esc(&detail),
            esc(&selectors),
            chain(&r["provenance"])
        );
    }
    h.push_str("</table>\n");
}

/// A provenance chain as lines of text.
fn chain(p: &Value) -> String {
    let mut lines: Vec<String> = vec![format!("{} via {}", text(&p["target"]), text(&p["selector"]))];
    if let Some(c) = p["chain"].as_array() {
        lines.extend(c.iter().map(text));
    }
    lines.iter().map(|s| esc(s)).collect::<Vec<_>>().join("<br>")
}

/// Rows a table shows at first: a browser lays out tens of thousands of rows slowly, so the
/// rest wait behind a "show all" button (they are in the page: a search finds them).
const PAGE: usize = 500;

/// The class that keeps row `i` back until "show all".
fn more(i: usize) -> &'static str {
    if i >= PAGE {
        " more"
    } else {
        ""
    }
}

/// Closes table `id` of `n` rows, with its "show all" button when some are kept back.
fn end_table(h: &mut String, id: &str, n: usize) {
    h.push_str("</tbody></table>\n");
    if n > PAGE {
        let _ = writeln!(h, "<p><button class=\"all\" data-table=\"{id}\">Show all {n} rows</button></p>");
    }
}

/// A record's one-line summary for the timeline.
fn summary(r: &Value) -> String {
    let flow = |r: &Value| {
        format!("{} {} → {}", text(&r["flow"]["proto"]), text(&r["flow"]["orig"]), text(&r["flow"]["resp"]))
    };
    match r["event"].as_str().unwrap_or("") {
        "warrant" => format!("warrant {}", text(&r["op"])),
        "association" => format!("{}  {}", text(&r["what"]), pairs(&r["detail"], &[])),
        "session-begin" => flow(r),
        "session-end" => {
            let h = session_holes(r);
            let gap = if h.is_empty() { String::new() } else { format!(" GAP: {h}") };
            format!("{} ({}){gap}", flow(r), text(&r["reason"]))
        }
        "object" => {
            // What links it to the rest of the case (a mail that is an artifact of an
            // uploaded image), in the record's own words.
            let says = text(&r["context"]["equals_artifact"]["says"]);
            format!(
                "{} {} ({} bytes, sha256 {}){}",
                text(&r["kind"]),
                object_name(r),
                text(&r["size"]),
                text(&r["sha256"]),
                if says.is_empty() { String::new() } else { format!(": {says}") }
            )
        }
        _ => {
            // Application events (FTP, HTTP, SMTP, ...) and findings: their fields but the
            // ones every record has.
            pairs(r, &["seq", "liid", "ts", "event", "cin", "provenance"])
        }
    }
}

/// What the inspection of each image found (a `vmi` record), and the run times the crontab plan
/// of a VM started from it predicts.
fn findings(h: &mut String, l: &Liid) {
    let found: Vec<&Value> = l.iri.iter().filter(|r| r["event"] == "vmi").collect();
    if found.is_empty() {
        return;
    }
    h.push_str("<h3>VM-image findings</h3>");
    let list = |v: &Value, f: &dyn Fn(&Value) -> String| -> String {
        v.as_array().map(|a| a.iter().map(|x| esc(&f(x))).collect::<Vec<_>>().join("<br>")).unwrap_or_default()
    };
    for r in found {
        let user = |u: &Value| {
            let groups =
                u["groups"].as_array().map(|g| g.iter().map(text).collect::<Vec<_>>().join(",")).unwrap_or_default();
            format!(
                "{} (uid {}, password {}{})",
                text(&u["name"]),
                text(&u["uid"]),
                text(&u["password"]),
                if groups.is_empty() { String::new() } else { format!(", groups {groups}") }
            )
        };
        let cron = |c: &Value| format!("{}: {}", text(&c["place"]), text(&c["line"]));
        let artifact = |a: &Value| {
            let what = [&a["subject"], &a["fingerprint"], &a["format"]]
                .iter()
                .map(|v| text(v))
                .find(|t| !t.is_empty())
                .unwrap_or_default();
            format!(
                "{} {} {} ({} bytes, sha256 {})",
                text(&a["kind"]),
                text(&a["place"]),
                what,
                text(&a["size"]),
                text(&a["sha256"])
            )
        };
        let _ = write!(
            h,
            "<table class=\"finding\"><tr><th>image</th><td>{} ({}, object {}), sha256 <code>{}</code></td></tr>\
             <tr><th>outcome</th><td>{}</td></tr><tr><th>OS</th><td>{}</td></tr><tr><th>hostname</th><td>{}</td></tr>\
             <tr><th>users</th><td>{}</td></tr><tr><th>crontabs</th><td>{}</td></tr><tr><th>artifacts</th><td>{}</td></tr></table>",
            esc(&text(&r["image_name"])),
            esc(&text(&r["container"])),
            esc(&text(&r["image_object"])),
            esc(&text(&r["image_sha256"])),
            esc(&text(&r["outcome"])),
            esc(&text(&r["os"])),
            esc(&text(&r["hostname"])),
            list(&r["users"], &user),
            list(&r["crontabs"], &cron),
            list(&r["artifacts"], &artifact),
        );
    }
    // A VM started from an inspected image: when its crontabs will run.
    for r in l.iri.iter().filter(|r| r["event"] == "association" && r["what"] == "instance.crontab-plan") {
        let d = &r["detail"];
        let runs = d["runs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        format!(
                            "{}: next {}",
                            text(&x["line"]),
                            x["next_runs"]
                                .as_array()
                                .map(|n| n.iter().map(text).collect::<Vec<_>>().join(", "))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            "<p class=\"plan\">VM {} from image {} (started {}): {}</p>",
            esc(&text(&d["instance"])),
            esc(&text(&d["image"])),
            esc(&when(&d["started"])),
            runs.iter().map(|s| esc(s)).collect::<Vec<_>>().join("; ")
        );
    }
    h.push('\n');
}

/// Whether a record says bytes are missing (a session's or an object's gaps).
fn has_gap(r: &Value) -> bool {
    let any = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty());
    match r["event"].as_str() {
        Some("session-end") => any(&r["gaps"][0]) || any(&r["gaps"][1]),
        Some("object") => any(&r["gaps"]),
        _ => false,
    }
}

fn timeline(h: &mut String, l: &Liid) {
    let undelivered = undelivered(l);
    let mut rows: Vec<&Value> = l.iri.iter().collect();
    // By time, then as the case has them (a stable sort keeps the case's order on ties).
    rows.sort_by(|a, b| text(&a["ts"]).cmp(&text(&b["ts"])));
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *kinds.entry(text(&r["event"])).or_default() += 1;
    }
    let table = format!("timeline-{}", esc(&l.name));
    h.push_str("<h3>Timeline</h3><p>");
    for (k, n) in &kinds {
        let _ = write!(
            h,
            "<label><input type=\"checkbox\" class=\"kind\" data-table=\"{table}\" value=\"{0}\" checked> {0} ({n})</label> ",
            esc(k)
        );
    }
    let _ = write!(
        h,
        "</p><table id=\"{table}\" class=\"paged\"><thead><tr><th>time</th><th>kind</th><th>CIN</th><th>what</th></tr></thead><tbody>"
    );
    let n = rows.len();
    for (i, r) in rows.into_iter().enumerate() {
        let kind = esc(&text(&r["event"]));
        let _ = write!(
            h,
            "<tr class=\"k-{kind}{}{}\" data-kind=\"{kind}\">{}<td>{kind}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            more(i),
            if has_gap(r) || r["cin"].as_u64().is_some_and(|c| undelivered.contains(&c)) { " gap" } else { "" },
            time_cell(&r["ts"]),
            esc(&text(&r["cin"])),
            esc(&summary(r))
        );
    }
    end_table(h, &table, n);
}

fn sessions(h: &mut String, l: &Liid) {
    let undelivered = undelivered(l);
    // A session's begin and end share its CIN; the end has the counters.
    let mut by_cin: BTreeMap<u64, (Option<&Value>, Option<&Value>)> = BTreeMap::new();
    for r in &l.iri {
        let Some(cin) = r["cin"].as_u64() else { continue };
        match r["event"].as_str() {
            Some("session-begin") => by_cin.entry(cin).or_default().0 = Some(r),
            Some("session-end") => by_cin.entry(cin).or_default().1 = Some(r),
            _ => {}
        }
    }
    let table = format!("sessions-{}", esc(&l.name));
    let _ = write!(
        h,
        "<h3>Sessions</h3><table id=\"{table}\" class=\"sortable paged\"><thead><tr><th>CIN</th><th>protocol</th>\
         <th>originator</th><th>responder</th><th>start</th><th>end</th><th>packets →</th><th>packets ←</th>\
         <th>bytes →</th><th>bytes ←</th><th>ended by</th><th>gaps</th></tr></thead><tbody>",
    );
    let n = by_cin.len();
    for (i, (cin, (b, e))) in by_cin.into_iter().enumerate() {
        let any = b.or(e).unwrap_or(&Value::Null);
        let c = |k: &str, i: usize| e.map(|e| text(&e["counters"][k][i])).unwrap_or_default();
        let gaps = e.map(session_holes).unwrap_or_default();
        let _ = write!(
            h,
            "<tr class=\"{}{}\"><td class=\"n\">{cin}</td><td>{}</td><td>{}</td><td>{}</td>{}{}\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            more(i).trim(),
            if gaps.is_empty() && !undelivered.contains(&cin) { "" } else { " gap" },
            esc(&text(&any["flow"]["proto"])),
            esc(&text(&any["flow"]["orig"])),
            esc(&text(&any["flow"]["resp"])),
            time_cell(b.map_or(&Value::Null, |b| &b["ts"])),
            time_cell(e.map_or(&Value::Null, |e| &e["ts"])),
            esc(&c("packets", 0)),
            esc(&c("packets", 1)),
            esc(&c("bytes", 0)),
            esc(&c("bytes", 1)),
            esc(&e.map(|e| text(&e["reason"])).unwrap_or_default()),
            esc(&gaps)
        );
    }
    end_table(h, &table, n);
}

/// Holes `[[offset, length], ...]` as text (`1448 bytes missing at 141`); empty when none.
fn holes(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| Some(format!("{} bytes missing at {}", g.get(1)?.as_u64()?, g.get(0)?.as_u64()?)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// A session's holes, each way (`gaps`: [originator's, responder's]).
fn session_holes(r: &Value) -> String {
    let (o, p) = (holes(&r["gaps"][0]), holes(&r["gaps"][1]));
    [("→ ", o), ("← ", p)]
        .into_iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(d, h)| format!("{d}{h}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Body text shown of a mail; the rest is in its bytes.
const MAIL_TEXT: usize = 64 << 10;

/// A mail as text to read (mail-parser): headers, the text body (an HTML one as text), and the
/// attachments by name, type and size. Never markup from the mail: no remote content, no script.
fn mail(bytes: &[u8]) -> String {
    let Some(m) = mail_parser::MessageParser::default().parse(bytes) else { return String::new() };
    let addrs = |a: Option<&mail_parser::Address>| {
        a.map(|a| {
            a.iter()
                .map(|x| match (x.name(), x.address()) {
                    (Some(n), Some(e)) => format!("{n} <{e}>"),
                    (n, e) => n.or(e).unwrap_or_default().to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let mut out = String::from("<details class=\"mail\"><summary>read</summary><pre>");
    for (k, v) in [
        ("From", addrs(m.from())),
        ("To", addrs(m.to())),
        ("Cc", addrs(m.cc())),
        ("Date", m.date().map(|d| d.to_rfc3339()).unwrap_or_default()),
        ("Subject", m.subject().unwrap_or_default().to_string()),
        ("Message-ID", m.message_id().unwrap_or_default().to_string()),
    ] {
        if !v.is_empty() {
            out.push_str(&esc(&format!("{k}: {v}\n")));
        }
    }
    let body = m.body_text(0).unwrap_or_default();
    let cut: String = body.chars().take(MAIL_TEXT).collect();
    out.push('\n');
    out.push_str(&esc(&cut));
    if cut.len() < body.len() {
        out.push_str("\n[...]");
    }
    for a in m.attachments() {
        let ty =
            a.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default())).unwrap_or_default();
        out.push_str(&esc(&format!(
            "\n[attachment] {} {} ({} bytes)",
            a.attachment_name().unwrap_or("(no name)"),
            ty,
            a.contents().len()
        )));
    }
    out.push_str("</pre></details>");
    out
}

/// An object's name for a reader: its file name, its mail's subject, its stream's URL.
fn object_name(o: &Value) -> String {
    let c = &o["context"];
    for v in [&o["name"], &c["subject"], &c["url"], &c["uri"], &c["place"]] {
        let t = text(v);
        if !t.is_empty() {
            return t;
        }
    }
    format!("object {}", text(&o["id"]))
}

fn objects(h: &mut String, l: &Liid, base: &str, case: &Path) {
    let table = format!("objects-{}", esc(&l.name));
    let _ = write!(
        h,
        "<h3>Objects</h3><table id=\"{table}\" class=\"sortable paged\"><thead><tr><th>id</th><th>name</th><th>kind</th>\
         <th>format</th><th>size</th><th>first seen</th><th>SHA-256</th><th>MD5</th><th>gaps</th><th>bytes</th></tr></thead><tbody>",
    );
    let mut objs: Vec<&Value> = l.objects.iter().collect();
    objs.sort_by_key(|o| o["id"].as_u64().unwrap_or(u64::MAX));
    let n = objs.len();
    for (i, o) in objs.into_iter().enumerate() {
        let path = text(&o["path"]);
        // Only a path of the case's own form (objects/<sha256>) is linked: nothing in the
        // case may point the page elsewhere.
        let safe =
            path.strip_prefix("objects/").is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let href = format!("{base}/{}/{path}", l.name);
        let format = text(&o["format"]["format"]);
        let link = match (safe, format.as_str()) {
            (false, _) => String::new(),
            (true, "png" | "jpeg" | "gif" | "webp") => {
                format!(
                    "<a href=\"{0}\"><img class=\"thumb\" src=\"{0}\" alt=\"\"></a><br><span class=\"dim\"></span>",
                    esc(&href)
                )
            }
            (true, "mp4" | "webm" | "matroska" | "mkv") => {
                format!(
                    "<video controls preload=\"metadata\" src=\"{0}\"></video><br><span class=\"dur\"></span> <a href=\"{0}\">bytes</a>",
                    esc(&href)
                )
            }
            (true, "mp3" | "ogg" | "wav" | "flac") => {
                format!(
                    "<audio controls preload=\"metadata\" src=\"{0}\"></audio><br><span class=\"dur\"></span> <a href=\"{0}\">bytes</a>",
                    esc(&href)
                )
            }
            (true, _) if text(&o["kind"]) == "mail" => {
                let bytes = std::fs::read(case.join(&l.name).join(&path)).unwrap_or_default();
                format!("<a href=\"{}\">bytes</a>{}", esc(&href), mail(&bytes))
            }
            (true, _) => format!("<a href=\"{}\">bytes</a>", esc(&href)),
        };
        let _ = write!(
            h,
            "<tr class=\"{}{}\"><td class=\"n\">{}</td><td>{}</td><td>{}</td><td title=\"{}\">{}</td><td class=\"n\">{}</td>{}\
             <td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{link}</td></tr>",
            more(i).trim(),
            if has_gap(&serde_json::json!({"event": "object", "gaps": o["gaps"]})) { " gap" } else { "" },
            esc(&text(&o["id"])),
            esc(&object_name(o)),
            esc(&text(&o["kind"])),
            esc(&text(&o["format"]["reason"])),
            esc(&format),
            esc(&text(&o["size"])),
            time_cell(&o["first_seen"]),
            esc(&text(&o["sha256"])),
            esc(&text(&o["md5"])),
            esc(&match holes(&o["gaps"]) {
                h if h.is_empty() => String::new(),
                h => format!("{h} (zero-filled)"),
            })
        );
    }
    end_table(h, &table, n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lemfs_hi1_notification_is_its_warrant_record() {
        let hi1 = serde_json::json!({
            "channel": "hi2", "cin": null, "liid": "L1", "seq": 0,
            "hI1-Operation": {"liActivated": {"lawfulInterceptionIdentifier": "L1", "timeStamp": {"utcTime": "261207030738Z"}}},
            "pSHeader": {"microSecondTimeStamp": {"seconds": 1796612858, "microSeconds": 541669}},
        });
        let r = as_case_record(hi1);
        assert_eq!(r["event"], "warrant");
        assert_eq!(r["op"], "activated");
        assert_eq!(r["ts"], "2026-12-07T03:07:38.541669000Z");
        let mut h = String::new();
        let l =
            Liid { name: "L1".into(), iri: vec![r], objects: Vec::new(), integrity: Integrity::Received(Vec::new()) };
        warrant(&mut h, &l);
        assert!(h.contains("<td>activated</td><td>not carried by HI1</td>"), "{h}");
        // A PDU with neither a case record nor HI1 keeps its header's time.
        let other = as_case_record(
            serde_json::json!({"cin": 3, "iri": {"x": 1}, "pSHeader": {"microSecondTimeStamp": {"seconds": 1, "microSeconds": 2}}}),
        );
        assert_eq!(
            (other["event"].as_str(), other["ts"].as_str()),
            (Some("hi2"), Some("1970-01-01T00:00:01.000002000Z"))
        );
    }

    #[test]
    fn everything_from_the_wire_is_escaped() {
        let d = tempfile::tempdir().unwrap();
        let case = d.path().join("case");
        let l = case.join("LIID-<b>");
        std::fs::create_dir_all(&l).unwrap();
        std::fs::write(case.join("MANIFEST.json"), "{}").unwrap();
        let hostile = r#"<script>alert(1)</script><img src=x onerror=alert(2)>"#;
        let iri = serde_json::json!({"seq": 0, "liid": "L", "ts": "2026-01-01T00:00:00Z", "event": "smtp",
            "subject": hostile, "cin": 1});
        std::fs::write(l.join("iri.jsonl"), format!("{iri}\n")).unwrap();
        let obj = serde_json::json!({"id": 1, "name": hostile, "kind": "mail", "path": "../../etc/passwd",
            "format": {"format": "\"><script>x</script>", "reason": hostile}, "sha256": "ab", "context": {}});
        std::fs::write(l.join("objects.jsonl"), format!("{obj}\n")).unwrap();
        let page = render(&case, &Verdict::Failed(hostile.into()), d.path()).unwrap();
        // One script: the page's own, at its end.
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        assert!(!page.contains("<img src=x") && !page.contains("<b>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // A path not of the case's form is not linked.
        assert!(!page.contains("etc/passwd\""), "{page}");
    }

    #[test]
    fn a_liids_verdict_takes_the_verified_roots_digests_and_hashes_when_the_root_failed() {
        let d = tempfile::tempdir().unwrap();
        let l = d.path().join("L1");
        std::fs::create_dir_all(l.join("objects")).unwrap();
        std::fs::write(l.join("iri.jsonl"), "{}\n").unwrap();
        std::fs::write(l.join("objects/abc"), "hello").unwrap();
        let key = crate::deliver::manifest::SigningKey::ephemeral();
        crate::deliver::manifest::write_case(d.path(), &key, "2026-01-01T00:00:00Z", &Default::default(), None)
            .unwrap();
        let root = verdict_of(d.path());
        assert!(matches!(root, Verdict::Verified { .. }), "{root:?}");
        assert!(matches!(liid_verdict(d.path(), "L1", &root), Verdict::Verified { files: 4, .. }));
        std::fs::write(l.join("objects/abc"), "hellO").unwrap();
        assert!(matches!(verdict_of(d.path()), Verdict::Failed(_)));
        match liid_verdict(d.path(), "L1", &verdict_of(d.path())) {
            Verdict::Failed(why) => assert!(why.contains("objects/abc"), "{why}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn an_lemfs_missing_pdus_and_failed_checks_condemn_their_streams_only() {
        let d = tempfile::tempdir().unwrap();
        let case = d.path().join("lemf");
        std::fs::create_dir_all(case.join("L1")).unwrap();
        let rec = |cin: u64, event: &str| {
            serde_json::json!({"liid": "L1", "cin": cin, "ts": "2026-01-01T00:00:00Z", "event": event,
                "flow": {"proto": "tcp", "orig": "a", "resp": "b"}})
            .to_string()
        };
        let lines = [rec(7, "session-begin"), rec(8, "session-begin"), rec(9, "session-begin")];
        std::fs::write(case.join("L1/iri.jsonl"), lines.join("\n") + "\n").unwrap();
        let stream = |channel: &str, cin: u64, kind: &str, gaps: Value| {
            serde_json::json!({"channel": channel, "liid": "L1", "cin": cin, "kind": kind, "pdus": 9, "gaps": gaps,
                "duplicates": 0, "cin_resets": 0})
        };
        let report = serde_json::json!({
            "streams": {
                "hi3/L1/7/cc": stream("hi3", 7, "cc", serde_json::json!([[4, 5], [8, 8]])),
                "hi3/L1/8/cc": stream("hi3", 8, "cc", serde_json::json!([])),
                "hi2/L1/8/iri": stream("hi2", 8, "iri", serde_json::json!([])),
                "hi2/L1/8/integrity-iri": stream("hi2", 8, "integrity-iri", serde_json::json!([])),
                "hi3/L2/9/cc": {"channel": "hi3", "liid": "L2", "cin": 9, "kind": "cc", "pdus": 1, "gaps": []}
            },
            "integrity": {"hash_failed": 1, "failures": [{"channel": "hi2", "liid": "L1", "cin": 8, "data_type": "iri",
                "check_type": "hash", "seq": 3, "reason": "hash of PDUs 0-2 differs"}]}
        });
        std::fs::write(case.join("report.json"), report.to_string()).unwrap();
        let verdict = verdict_of(&case);
        assert!(matches!(verdict, Verdict::Received { gaps: 2, integrity_failed: 1, .. }), "{verdict:?}");
        let page = render(&case, &verdict, d.path()).unwrap();
        assert!(page.contains("id=\"verdict\">Received") && page.contains("<p class=\"bad\""), "the banner says so");
        let table = &page[page.find("id=\"delivery-L1\"").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        let rows: Vec<&str> = table.split("<tr").skip(2).collect();
        // L1's four streams, not L2's; sorted by channel, CIN, kind.
        assert_eq!(rows.len(), 4, "{table}");
        let verdict_of_row = |r: &str| r.rsplit("<td>").next().unwrap().split("</td>").next().unwrap().to_string();
        assert_eq!(verdict_of_row(rows[0]), "hash check failed: hash of PDUs 0-2 differs", "hi2 8 integrity-iri");
        assert_eq!(verdict_of_row(rows[1]), "hash check failed: hash of PDUs 0-2 differs", "hi2 8 iri");
        assert_eq!(verdict_of_row(rows[2]), "PDUs missing: 4-5, 8", "hi3 7 cc");
        assert_eq!(verdict_of_row(rows[3]), "whole", "hi3 8 cc");
        assert!(rows[3].starts_with(" class=\"\""), "{}", rows[3]);
        assert!(rows[..3].iter().all(|r| r.starts_with(" class=\"gap\"")));
        assert!(page.contains("<details open><summary id=\"delivery-summary-L1\" class=\"bad\">4 sequence-number streams: 3 not whole</summary>"));
        // The records and sessions of CINs 7 and 8 are marked where they are read; CIN 9's not.
        let timeline = &page[page.find("id=\"timeline-L1\"").unwrap()..];
        let marked: Vec<bool> = timeline
            .split("<tr class=\"k-")
            .skip(1)
            .take(3)
            .map(|r| r.split("</tr>").next().unwrap().contains(" gap\""))
            .collect();
        assert_eq!(marked, [true, true, false]);
        let sessions = &page[page.find("id=\"sessions-L1\"").unwrap()..];
        let marked: Vec<bool> = sessions
            .split("<tr class=\"")
            .skip(1)
            .take(3)
            .map(|r| r.starts_with(" gap\"") || r.starts_with("gap\""))
            .collect();
        assert_eq!(marked, [true, true, false]);
    }

    #[test]
    fn relative_paths_go_up_and_down() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::create_dir_all(d.path().join("c")).unwrap();
        assert_eq!(relative(&d.path().join("c"), &d.path().join("a/b")), "../a/b");
        assert_eq!(relative(d.path(), &d.path().join("a")), "a");
    }
}
