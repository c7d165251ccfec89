//! Linux namespace sandbox backend
