fn main() {
    println!("tapir {}", env!("CARGO_PKG_VERSION"));
}
