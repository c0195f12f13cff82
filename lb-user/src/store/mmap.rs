//! Arrays shared with the data plane through `mmap`.
use std::os::fd::{AsFd as _, AsRawFd as _};

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
        self.ptr_field(i).map(|p| unsafe { std::ptr::read_volatile(p) })
    }

    pub fn set(&mut self, i: u32, v: T) -> anyhow::Result<()> {
        if (i as usize) >= self.len {
            bail!("index {i} beyond the map's {} entries", self.len);
        }
        unsafe { std::ptr::write_volatile(self.ptr.add(i as usize * self.stride).cast::<T>(), v) };
        Ok(())
    }
}

impl<T> Drop for MmapArray<T> {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
    }
}

impl MmapArray<c::Dest> {
    /// Ids of the slots with `DEST_F_IN_USE` set, in ascending order. Reads one byte per slot:
    /// the arrays are large and mostly empty, and every invocation scans them.
    pub(super) fn in_use_ids(&self) -> Vec<u32> {
        let off = std::mem::offset_of!(c::Dest, flags);
        let mut ids = Vec::new();
        for i in 0..self.len {
            // SAFETY: i < len, so the byte lies inside the mapping.
            let f = unsafe { std::ptr::read_volatile(self.ptr.add(i * self.stride + off)) };
            if f & c::DEST_F_IN_USE != 0 {
                ids.push(i as u32);
            }
        }
        ids
    }
}

impl<T> MmapArray<T> {
    pub(super) fn ptr_field(&self, i: u32) -> Option<*mut T> {
        ((i as usize) < self.len).then(|| unsafe { self.ptr.add(i as usize * self.stride).cast::<T>() })
    }
}
