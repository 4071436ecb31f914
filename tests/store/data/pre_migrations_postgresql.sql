-- The schema certsync PostgreSQL stores had before migrations (create_all of the models
-- at commit e147b28, rendered for postgresql). tests/store/test_migrations.py adopts such a store.

CREATE TABLE authorities (
	id SERIAL NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	generation INTEGER NOT NULL, 
	parent_id INTEGER, 
	subject VARCHAR(1024) NOT NULL, 
	key_type VARCHAR(16) NOT NULL, 
	serial VARCHAR(64) NOT NULL, 
	not_before TIMESTAMP WITH TIME ZONE NOT NULL, 
	not_after TIMESTAMP WITH TIME ZONE NOT NULL, 
	cert_der BYTEA NOT NULL, 
	key_enc BYTEA NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	crl_number INTEGER NOT NULL, 
	crl_der BYTEA, 
	PRIMARY KEY (id), 
	UNIQUE (name, generation), 
	FOREIGN KEY(parent_id) REFERENCES authorities (id)
);

CREATE INDEX ix_authorities_name ON authorities (name);

CREATE TABLE locks (
	name VARCHAR(63) NOT NULL, 
	owner VARCHAR(255) NOT NULL, 
	expires_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE settings (
	key VARCHAR(64) NOT NULL, 
	value BYTEA NOT NULL, 
	PRIMARY KEY (key)
);

CREATE TABLE certificates (
	id SERIAL NOT NULL, 
	name VARCHAR(63) NOT NULL, 
	version INTEGER NOT NULL, 
	profile VARCHAR(63) NOT NULL, 
	authority_id INTEGER NOT NULL, 
	serial VARCHAR(64) NOT NULL, 
	common_name VARCHAR(255), 
	sans JSON NOT NULL, 
	key_type VARCHAR(16) NOT NULL, 
	not_before TIMESTAMP WITH TIME ZONE NOT NULL, 
	not_after TIMESTAMP WITH TIME ZONE NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	cert_der BYTEA NOT NULL, 
	key_enc BYTEA, 
	source VARCHAR(8) NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	revoked_at TIMESTAMP WITH TIME ZONE, 
	revocation_reason VARCHAR(32), 
	PRIMARY KEY (id), 
	UNIQUE (name, version), 
	FOREIGN KEY(authority_id) REFERENCES authorities (id), 
	UNIQUE (serial)
);

CREATE INDEX ix_certificates_name ON certificates (name);

CREATE TABLE deployments (
	id SERIAL NOT NULL, 
	cert_name VARCHAR(63) NOT NULL, 
	destination VARCHAR(63) NOT NULL, 
	remote_name VARCHAR(512) NOT NULL, 
	certificate_id INTEGER, 
	fingerprint VARCHAR(64) NOT NULL, 
	remote_version VARCHAR(128), 
	pushed_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (destination, remote_name), 
	FOREIGN KEY(certificate_id) REFERENCES certificates (id)
);

CREATE INDEX ix_deployments_cert_name ON deployments (cert_name);
