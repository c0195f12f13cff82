//! What the data plane (main.rs, the `lb-ebpf` object) and the benchmark's programs (bench.rs,
//! the `lb-ebpf-bench` object) share: bounds-checked parsing, checksums, the panic handler.
#![cfg_attr(target_arch = "bpf", no_std)]

pub mod csum;
pub mod parse;
pub mod parse6;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
