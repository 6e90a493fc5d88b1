pub mod consultation;
pub mod directory;
pub mod routes;
pub mod store;
