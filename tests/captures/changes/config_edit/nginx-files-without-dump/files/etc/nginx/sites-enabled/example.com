server {
	listen 80;
	server_name example.com;
	root /var/www/example.com;

	location ~ \.php$ {
		include snippets/fastcgi-php.conf;
		fastcgi_pass unix:/run/php/php8.2-fpm.sock;
		fastcgi_read_timeout 60s;
	}
}
