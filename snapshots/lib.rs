//! No code: `snapshots/<variant>/<scenario>.snap` are the reviewed reports of scenarios/, compared
//! by `luo-harness run` and the nextest scenario tests (harness/src/scenario/snapshot.rs). This is a
//! package only so that `cargo insta review` and `cargo insta accept` find the `.snap.new` files a
//! run writes here with `--update-snapshots`.
