//! Kernel (ip_vs_ctl.c) semantics of table operations (being written)
