//! Flow table and TCP reassembly (to be written).
