//! Embeds the SQL components (`sql/<component>/NN_*.sql`) into the binary, in install
//! order, so `pgqd install` and the test harness run exactly the files in the tree.
//!
//! The list is generated from the directory rather than written by hand, so a new file
//! cannot be forgotten; `schema::tests` checks that the numeric prefixes are unique and
//! ascending.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// Component directories under `sql/`, in the order `pgqd install` applies them.
const COMPONENTS: &[&str] = &[
    "pgq", "pgq_ext", "pgq_coop", "triggers", "pgq_node", "replica",
];

fn main() {
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let sql = Path::new(&root).join("sql");
    println!("cargo:rerun-if-changed=sql");
    let mut out = String::new();
    out.push_str("/// Embedded component files: (component, [(file name, contents)]).\n");
    out.push_str("pub static COMPONENT_FILES: &[(&str, &[(&str, &str)])] = &[\n");
    for comp in COMPONENTS {
        let dir = sql.join(comp);
        // A missing path in rerun-if-changed makes cargo rebuild the crate every time;
        // `sql` itself is watched, so a component directory created later is noticed.
        if dir.is_dir() {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
        let mut names: Vec<String> = match fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        writeln!(out, "    ({comp:?}, &[").unwrap();
        for n in names {
            let path = dir.join(&n);
            println!("cargo:rerun-if-changed={}", path.display());
            writeln!(
                out,
                "        ({n:?}, include_str!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        out.push_str("    ]),\n");
    }
    out.push_str("];\n");

    // Upgrade scripts of the pgq component: sql/pgq/upgrade/pgq--A--B.sql.
    let up = sql.join("pgq").join("upgrade");
    if up.is_dir() {
        println!("cargo:rerun-if-changed={}", up.display());
    } else {
        // Its creation changes sql/pgq, which is watched.
        println!("cargo:rerun-if-changed={}", sql.join("pgq").display());
    }
    let mut ups: Vec<String> = match fs::read_dir(&up) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect(),
        Err(_) => Vec::new(),
    };
    ups.sort();
    out.push_str("/// Embedded upgrade scripts of the pgq component: (file name, contents).\n");
    out.push_str("pub static PGQ_UPGRADES: &[(&str, &str)] = &[\n");
    for n in ups {
        let path = up.join(&n);
        writeln!(
            out,
            "    ({n:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");

    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("schema_files.rs");
    fs::write(dest, out).expect("write generated schema list");
}
