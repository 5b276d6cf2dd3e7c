//! raftkv: a replicated key-value server speaking the Redis protocol (work in progress).

fn main() {
    eprintln!("raftkv: not yet implemented");
    std::process::exit(2);
}
