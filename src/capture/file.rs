//! pcap and pcapng files (to be written).
