-- The schema certsync SQLite stores had before migrations (create_all of the models
-- at commit e147b28, rendered for sqlite). tests/store/test_migrations.py adopts such a store.

CREATE TABLE authorities (
	id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	generation INTEGER NOT NULL, 
	parent_id INTEGER, 
	subject VARCHAR(1024) NOT NULL, 
	key_type VARCHAR(16) NOT NULL, 
	serial VARCHAR(64) NOT NULL, 
	not_before DATETIME NOT NULL, 
	not_after DATETIME NOT NULL, 
	cert_der BLOB NOT NULL, 
	key_enc BLOB NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	created_at DATETIME NOT NULL, 
	crl_number INTEGER NOT NULL, 
	crl_der BLOB, 
	PRIMARY KEY (id), 
	UNIQUE (name, generation), 
	FOREIGN KEY(parent_id) REFERENCES authorities (id)
);

CREATE INDEX ix_authorities_name ON authorities (name);

CREATE TABLE locks (
	name VARCHAR(63) NOT NULL, 
	owner VARCHAR(255) NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE settings (
	"key" VARCHAR(64) NOT NULL, 
	value BLOB NOT NULL, 
	PRIMARY KEY ("key")
);

CREATE TABLE certificates (
	id INTEGER NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	version INTEGER NOT NULL, 
	profile VARCHAR(63) NOT NULL, 
	authority_id INTEGER NOT NULL, 
	serial VARCHAR(64) NOT NULL, 
	common_name VARCHAR(255), 
	sans JSON NOT NULL, 
	key_type VARCHAR(16) NOT NULL, 
	not_before DATETIME NOT NULL, 
	not_after DATETIME NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	cert_der BLOB NOT NULL, 
	key_enc BLOB, 
	source VARCHAR(8) NOT NULL, 
	created_at DATETIME NOT NULL, 
	revoked_at DATETIME, 
	revocation_reason VARCHAR(32), 
	PRIMARY KEY (id), 
	UNIQUE (name, version), 
	FOREIGN KEY(authority_id) REFERENCES authorities (id), 
	UNIQUE (serial)
);

CREATE INDEX ix_certificates_name ON certificates (name);

CREATE TABLE deployments (
	id INTEGER NOT NULL, 
	cert_name VARCHAR(63) NOT NULL, 
	destination VARCHAR(63) NOT NULL, 
	remote_name VARCHAR(512) NOT NULL, 
	certificate_id INTEGER, 
	fingerprint VARCHAR(64) NOT NULL, 
	remote_version VARCHAR(128), 
	pushed_at DATETIME NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (destination, remote_name), 
	FOREIGN KEY(certificate_id) REFERENCES certificates (id)
);

CREATE INDEX ix_deployments_cert_name ON deployments (cert_name);
