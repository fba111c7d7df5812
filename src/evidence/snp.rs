//! SEV-SNP attestation reports.
