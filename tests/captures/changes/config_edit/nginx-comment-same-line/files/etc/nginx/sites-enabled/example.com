server {
	listen 80;
	server_name example.com;   # canonical; www. redirects elsewhere
	root /var/www/example.com;

	location ~ \.php$ {
		include snippets/fastcgi-php.conf; # Debian's
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
		fastcgi_read_timeout 60s;# keep above request_terminate_timeout; see ticket #12 ; really
	}
}
