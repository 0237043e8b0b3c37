//! `sqlx::migrate!` embeds `../sql/sqlite` and `../sql/mysql` at compile
//! time; rebuild when a migration is added or changed.

fn main() {
    println!("cargo:rerun-if-changed=../sql/sqlite");
    println!("cargo:rerun-if-changed=../sql/mysql");
}
