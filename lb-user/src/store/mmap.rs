//! Arrays shared with the data plane through `mmap`.
//!
//! Hand-written: aya has no mmap of array maps; this is one `mmap` call through libc.
use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::atomic::{AtomicU32, Ordering::SeqCst},
};

use anyhow::bail;
use aya::maps::MapData;
use lb_common as c;

/// A BPF array shared with the kernel through `mmap` (maps created with `BPF_F_MMAPABLE`).
/// The kernel lays elements out every `round_up(value_size, 8)` bytes.
pub struct MmapArray<T> {
    _map: MapData,
    ptr: *mut u8,
    stride: usize,
    len: usize,
    bytes: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy> MmapArray<T> {
    pub(super) fn new(map: MapData, len: u32) -> anyhow::Result<Self> {
        let have = map.info()?.max_entries();
        if have != len {
            bail!("a pinned array has {have} entries, this build expects {len}: remove the maps (`lbd teardown`)");
        }
        let stride = std::mem::size_of::<T>().next_multiple_of(8);
        let bytes = len as usize * stride;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a fresh shared mapping of the map's whole value area (its `len` elements of
        // `stride` bytes, as the kernel lays out mmapable arrays); nothing else in this process
        // maps it, and `fd` stays open in `_map` for the mapping's life.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), bytes, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if p == libc::MAP_FAILED {
            bail!("mmap of a map failed: {}", std::io::Error::last_os_error());
        }
        Ok(MmapArray { _map: map, ptr: p.cast(), stride, len: len as usize, bytes, _t: std::marker::PhantomData })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: u32) -> Option<T> {
        // SAFETY: ptr_field gives an aligned pointer inside the mapping; volatile because the
        // data plane writes the memory behind the compiler's back (the value may be torn by a
        // concurrent write, which readers of these counters and configurations tolerate).
        self.ptr_field(i).map(|p| unsafe { std::ptr::read_volatile(p) })
    }
}

impl<T> MmapArray<T> {
    /// Element `i`, or None past the end.
    pub(super) fn ptr_field(&self, i: u32) -> Option<*mut T> {
        // SAFETY: i < len, so the element lies inside the mapping.
        ((i as usize) < self.len).then(|| unsafe { self.ptr.add(i as usize * self.stride).cast::<T>() })
    }
}

impl<T> Drop for MmapArray<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no reference into it outlives
        // `self` (every accessor borrows `self`).
        unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
    }
}

impl MmapArray<u32> {
    /// Writes element `i` (only userspace writes the scheduling slots).
    pub fn set(&mut self, i: u32, v: u32) -> anyhow::Result<()> {
        let Some(p) = self.ptr_field(i) else {
            bail!("index {i} beyond the map's {} entries", self.len);
        };
        // SAFETY: an aligned element inside the mapping.
        unsafe { std::ptr::write_volatile(p, v) };
        Ok(())
    }
}

/// `Dest` read and written as 32-bit words, so a write can skip the flags word.
const DEST_WORDS: usize = std::mem::size_of::<c::Dest>() / 4;
const DEST_FLAGS_WORD: usize = std::mem::offset_of!(c::Dest, flags) / 4;
const DEST_TREE_LEAF_WORD: usize = std::mem::offset_of!(c::Dest, tree_leaf) / 4;
const _: () = assert!(
    std::mem::size_of::<c::Dest>().is_multiple_of(4)
        && std::mem::offset_of!(c::Dest, flags).is_multiple_of(4)
        && std::mem::align_of::<c::Dest>() >= 4
);

impl MmapArray<c::Dest> {
    /// Dest `i`'s flags word, which the data plane changes with BPF atomics: only ever accessed
    /// atomically here.
    pub(super) fn flags(&self, i: u32) -> Option<&AtomicU32> {
        let p = self.ptr_field(i)?;
        // SAFETY: the field of an element inside the mapping, 4-aligned (the stride is a
        // multiple of 8, the offset of 4); the reference borrows `self`, so it cannot outlive
        // the mapping; every access to this word, here and in the data plane, is atomic.
        Some(unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*p).flags)) })
    }

    /// Writes every field of dest `i` but its flags: those are set and cleared bit by bit
    /// ([`MmapArray::flags`]), as the data plane changes them at the same time. Nor its
    /// `tree_leaf`, which only the scheduling-tree code places ([`MmapArray::set_tree_leaf`]).
    pub(super) fn write_fields(&mut self, i: u32, v: &c::Dest) -> anyhow::Result<()> {
        let Some(p) = self.ptr_field(i) else {
            bail!("dest {i} beyond the map's {} entries", self.len);
        };
        let src = (v as *const c::Dest).cast::<u32>();
        let dst = p.cast::<u32>();
        for w in (0..DEST_WORDS).filter(|&w| w != DEST_FLAGS_WORD && w != DEST_TREE_LEAF_WORD) {
            // SAFETY: word w < DEST_WORDS of `v` (every byte initialised: Dest's padding is
            // explicit fields) and of the element, both 4-aligned.
            unsafe { std::ptr::write_volatile(dst.add(w), src.add(w).read()) };
        }
        Ok(())
    }

    /// Sets dest `i`'s leaf in its scheduling tree (`Dest::tree_leaf`), one aligned word.
    pub(super) fn set_tree_leaf(&mut self, i: u32, leaf: u32) -> anyhow::Result<()> {
        let Some(p) = self.ptr_field(i) else {
            bail!("dest {i} beyond the map's {} entries", self.len);
        };
        // SAFETY: an aligned field of an element inside the mapping; the data plane only reads it.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).tree_leaf), leaf) };
        Ok(())
    }

    /// Ids of the slots with `DEST_F_IN_USE` set, in ascending order. Reads one word per slot:
    /// the arrays are large and mostly empty, and every invocation scans them.
    pub(super) fn in_use_ids(&self) -> Vec<u32> {
        let off = std::mem::offset_of!(c::Dest, flags);
        let mut ids = Vec::new();
        for i in 0..self.len {
            // SAFETY: i < len: the flags word of an element inside the mapping, 4-aligned, only
            // ever accessed atomically (see `flags`).
            let f = unsafe { AtomicU32::from_ptr(self.ptr.add(i * self.stride + off).cast::<u32>()) };
            if f.load(SeqCst) & c::DEST_F_IN_USE != 0 {
                ids.push(i as u32);
            }
        }
        ids
    }
}

