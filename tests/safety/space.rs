//! Full disks on a real small tmpfs.
