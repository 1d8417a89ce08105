//! hearth-server: Magnum's cluster model and validation, the mapping to Heat parameters and node configs,
//! the Heat templates and user-data, and the bundle `openstack stack create` takes.

pub mod bundle;
pub mod model;
pub mod params;
pub mod settings;
pub mod user_data;
pub mod validate;
