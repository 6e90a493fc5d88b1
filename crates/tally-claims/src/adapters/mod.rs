pub mod copy;
pub mod csv;
pub mod imports;
pub mod json;
pub mod limit;
pub mod routes;
pub mod store;
