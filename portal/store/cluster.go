package store

import _ "embed"

// ClusterSchemaPostgres is the PostgreSQL migration 0016 (the tables of
// portal replicas): portal/cluster applies it at start, as it is written
// to be applied more than once.
//
//go:embed migrations/postgres/0016_cluster.sql
var ClusterSchemaPostgres string
