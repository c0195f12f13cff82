//! `lbadm`: the ipvsadm-compatible command line (installable as `ipvsadm`).
fn main() {
    std::process::exit(lb_user::ipvsadm::main(std::env::args_os().collect()))
}
