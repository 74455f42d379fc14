use mistralrs as _;
fn main() {}
