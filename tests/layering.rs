//! The crate's layering, read from the source: the record layer is the ground floor (it names
//! nothing of tapir but `timestamp`), and no two top-level modules import each other, directly
//! or through others. A `crate::x` path anywhere in a module (a `use`, a path in code or a doc
//! link) counts as an import of `x`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules each top-level module names through `crate::`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(top.clone()).or_default();
        let mut add = |name: &str| {
            if !name.is_empty() && name != top {
                deps.insert(name.to_string());
            }
        };
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}`: every first segment in the group.
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for part in inner.split(',') {
                    add(part.trim().split("::").next().unwrap_or("").trim());
                }
            } else {
                add(&rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>());
            }
        }
    }
    g
}

#[test]
fn the_record_layer_names_nothing_above_it() {
    let g = import_graph();
    let record = g.get("record").expect("src/record exists");
    let allowed: BTreeSet<String> = ["timestamp".to_string()].into();
    assert!(record.is_subset(&allowed), "record imports {record:?}; only `timestamp` is below it");
}

#[test]
fn no_module_imports_itself_through_others() {
    let g = import_graph();
    for (start, deps) in &g {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = deps.iter().collect();
        while let Some(m) = stack.pop() {
            assert!(m != start, "{start} imports itself through {m} (graph: {g:?})");
            if seen.insert(m.clone()) {
                stack.extend(g.get(m).into_iter().flatten());
            }
        }
    }
}
