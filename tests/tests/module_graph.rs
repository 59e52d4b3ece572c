//! The modules of each library crate import one another one way: no cycles, and the payload crate's in the
//! order its crate documentation declares. A module's imports are the `crate::NAME` paths written anywhere
//! in its files (tests included; grouped `crate::{…}` imports are refused so none hides); the crate root
//! (`lib.rs`) declares the modules and re-exports them, and is not one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → the modules of the same crate it names.
fn imports(crate_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(crate_dir).join("src");
    let mut files = Vec::new();
    collect_rust_files(&src, &mut files);
    let module_of = |file: &Path| {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a file").as_os_str().to_string_lossy();
        first.strip_suffix(".rs").unwrap_or(&first).to_owned()
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).filter(|m| m != "lib").collect();
    assert!(!modules.is_empty(), "no modules under {}", src.display());
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let module = module_of(file);
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable source");
        assert!(!text.contains("crate::{"), "{}: name each module's import on its own", file.display());
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name != module && modules.contains(&name) {
                graph.get_mut(&module).expect("a module").insert(name);
            }
        }
    }
    graph
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// A cycle in `graph` (as the modules along it), if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'g>(
        module: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| *m == module) {
            return Some(path[start..].iter().chain([&module]).map(|m| m.to_string()).collect());
        }
        if !done.insert(module) {
            return None;
        }
        path.push(module);
        for next in &graph[module] {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_cycle() {
    for crate_dir in ["payload", "domain", "functions/lambda-adapter"] {
        let graph = imports(crate_dir);
        assert_eq!(cycle(&graph), None, "{crate_dir}: {graph:#?}");
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec![])]
        .into_iter()
        .map(|(m, to)| (m.to_owned(), to.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}

/// Each payload module imports only those before it: the storage rules and dates, then the reader, the
/// text writer, the hashes, the conversion, the memos (`payload/src/lib.rs`).
#[test]
fn payload_modules_import_only_earlier_ones() {
    const ORDER: [&str; 7] = ["rules", "js_date", "reader", "text", "hash", "convert", "memo"];
    let graph = imports("payload");
    assert_eq!(graph.keys().map(String::as_str).collect::<BTreeSet<_>>(), ORDER.into_iter().collect(), "a module is missing from ORDER");
    for (module, imported) in &graph {
        let at = ORDER.iter().position(|m| m == module).expect("in ORDER");
        for name in imported {
            let other = ORDER.iter().position(|m| m == name).expect("in ORDER");
            assert!(other < at, "payload::{module} imports payload::{name}, which comes after it");
        }
    }
}
