//! The `nexttile` command line.

fn main() {
    std::process::exit(nexttile::cli::main());
}
