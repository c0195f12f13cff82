//! ipvsadm front end (being written)
