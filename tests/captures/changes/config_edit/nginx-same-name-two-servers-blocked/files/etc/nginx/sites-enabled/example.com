server {
	listen 80;
	server_name example.com;
	return 301 http://example.com:8080$request_uri;
}

server {
	listen 8080;
	server_name example.com;
	root /var/www/example.com;

	location ~ \.php$ {
		include snippets/fastcgi-php.conf;
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
		fastcgi_read_timeout 60s;
	}
}
