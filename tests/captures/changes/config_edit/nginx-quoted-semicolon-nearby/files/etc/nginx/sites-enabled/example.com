server {
	listen 80;
	server_name example.com;
	root /var/www/example.com;

	location ~ \.php$ {
		add_header Content-Security-Policy "default-src 'self'; script-src 'self' 'unsafe-inline'; # not a comment" always;
		add_header X-Timeout 'fastcgi_read_timeout 60s; really' always; fastcgi_read_timeout 60s;
		include snippets/fastcgi-php.conf;
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
	}
}
