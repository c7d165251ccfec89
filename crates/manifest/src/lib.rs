//! `instavm.yaml` v1/v2: the manifest model and its validation, zero-config project detection,
//! and the resolved deploy plan, all matching the reference Python CLI (`instavm` 0.26.1).

pub mod py;
pub mod yaml;
