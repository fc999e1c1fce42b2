//! PostgreSQL backend (clustered default).
