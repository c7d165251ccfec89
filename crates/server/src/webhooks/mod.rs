//! Webhooks (spec §15, spec/webhooks.md §1). Work in progress on this branch: the signature
//! contract and the store's queue exist; routes and the delivery worker come next.

pub mod sign;
